/* The C ABI from C: every entry point of fieldcrypt.h, its success paths, its error paths, and
 * malformed input fed to every function that takes input. Run under valgrind memcheck by
 * ffi/tests/run-c-tests.sh: zero errors and zero leaks, or the run fails.
 *
 *   test_ffi POLICY_FILE KEY_FILE
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fieldcrypt.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    checks++;                                                             \
    if (!(cond)) {                                                        \
      failures++;                                                         \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fputc('\n', stderr);                                                \
    }                                                                     \
  } while (0)

/* A status check that also frees the error, so no test leaks its message. */
static void expect_status(int32_t got, int32_t want, fc_error *err, const char *what) {
  checks++;
  if (got != want) {
    failures++;
    fprintf(stderr, "FAIL %s: status %d (%s), want %d (%s): %.*s\n", what, got, fc_status_name(got), want,
            fc_status_name(want), err ? (int)err->message.len : 0,
            err && err->message.data ? (const char *)err->message.data : "");
  } else if (want != FC_OK && err) {
    CHECK(err->status == want, "%s: err->status %d", what, err->status);
    CHECK(err->message.data != NULL && err->message.len > 0, "%s: no message", what);
    CHECK(err->message.data[err->message.len] == '\0', "%s: message not NUL-terminated", what);
  }
  if (err) fc_error_free(err);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
  buf[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* --- packed records (ffi/README.md) ------------------------------------------------------- */
typedef struct {
  uint8_t *data;
  size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 16;
    b->data = realloc(b->data, b->cap);
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}
static void put_u32(bytes *b, uint32_t v) {
  uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(b, le, 4);
}
static void put_opt(bytes *b, const void *p, int64_t n) {
  if (n < 0) {
    put_u32(b, FC_ABSENT);
  } else {
    put_u32(b, (uint32_t)n);
    put(b, p, (size_t)n);
  }
}
static uint32_t get_u32(const uint8_t **p) {
  uint32_t v = (uint32_t)(*p)[0] | (uint32_t)(*p)[1] << 8 | (uint32_t)(*p)[2] << 16 | (uint32_t)(*p)[3] << 24;
  *p += 4;
  return v;
}

/* A record read back out of a packed buffer (pointers into it). */
typedef struct {
  const uint8_t *key, *value;
  int64_t key_len, value_len;
  uint32_t n_headers;
  const char *names[8];
  uint32_t name_lens[8];
  const uint8_t *values[8];
  int64_t value_lens[8];
} record;

static const uint8_t *unpack(const uint8_t *p, record *r) {
  uint32_t n = get_u32(&p);
  r->key_len = n == FC_ABSENT ? -1 : (int64_t)n;
  r->key = p;
  p += r->key_len < 0 ? 0 : r->key_len;
  n = get_u32(&p);
  r->value_len = n == FC_ABSENT ? -1 : (int64_t)n;
  r->value = p;
  p += r->value_len < 0 ? 0 : r->value_len;
  r->n_headers = get_u32(&p);
  for (uint32_t i = 0; i < r->n_headers && i < 8; i++) {
    r->name_lens[i] = get_u32(&p);
    r->names[i] = (const char *)p;
    p += r->name_lens[i];
    n = get_u32(&p);
    r->value_lens[i] = n == FC_ABSENT ? -1 : (int64_t)n;
    r->values[i] = p;
    p += r->value_lens[i] < 0 ? 0 : r->value_lens[i];
  }
  return p;
}

/* The headers of an unpacked record, packed again (to hand a consumer what a producer made). */
static bytes headers_of(const record *r) {
  bytes b = {0};
  put_u32(&b, r->n_headers);
  for (uint32_t i = 0; i < r->n_headers; i++) {
    put_opt(&b, r->names[i], r->name_lens[i]);
    put_opt(&b, r->values[i], r->value_lens[i]);
  }
  return b;
}

static int header_index(const record *r, const char *name) {
  for (uint32_t i = 0; i < r->n_headers; i++)
    if (r->name_lens[i] == strlen(name) && memcmp(r->names[i], name, r->name_lens[i]) == 0) return (int)i;
  return -1;
}

#define S(lit) (const uint8_t *)(lit), strlen(lit)
static const char *TOPIC = "customers";
static const char *PLAIN = "{\"id\":7,\"name\":\"Ada\",\"password\":\"hunter2\",\"visa\":\"4111111111111111\"}";

static int32_t encrypt_one(fc_codec *codec, const char *value, const bytes *headers, fc_buf *out, fc_error *err) {
  return fc_codec_encrypt(codec, S(TOPIC), (const uint8_t *)"k1", 2, (const uint8_t *)value, (int64_t)strlen(value),
                          headers ? headers->data : NULL, headers ? headers->len : 0, out, err);
}

/* --- the tests --------------------------------------------------------------------------- */
static void test_version_and_status_names(void) {
  const char *v = fc_version();
  CHECK(v != NULL && strlen(v) >= 5 && strchr(v, '.') != NULL, "version %s", v ? v : "(null)");
  const struct {
    int32_t status;
    const char *name;
  } names[] = {{FC_OK, "ok"},
               {FC_ERR_POLICY, "policy"},
               {FC_ERR_CONFIG, "config"},
               {FC_ERR_RECORD, "record"},
               {FC_ERR_FORMAT, "format"},
               {FC_ERR_UNSUPPORTED_VERSION, "unsupported_version"},
               {FC_ERR_CRYPTO, "crypto"},
               {FC_ERR_KEY_NOT_FOUND, "key_not_found"},
               {FC_ERR_ACCESS_DENIED, "access_denied"},
               {FC_ERR_KMS, "kms"},
               {FC_ERR_REGISTRY, "registry"},
               {FC_ERR_LIMIT_EXCEEDED, "limit_exceeded"},
               {FC_ERR_SHREDDED, "shredded"},
               {FC_ERR_INVALID_ARGUMENT, "invalid_argument"},
               {FC_ERR_PANIC, "panic"},
               {FC_ERR_OTHER, "other"},
               {FC_ERR_KAFKA, "kafka"},
               {-1, "unknown"},
               {99999, "unknown"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    CHECK(strcmp(fc_status_name(names[i].status), names[i].name) == 0, "status %d", names[i].status);
}

static void test_codec_new_errors(const char *policy, const char *config) {
  fc_error err = {0};
  fc_codec *codec = NULL;
  expect_status(fc_codec_new(NULL, 5, S(config), &codec, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL policy");
  expect_status(fc_codec_new(S(policy), NULL, 3, &codec, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL config");
  expect_status(fc_codec_new(S(policy), S(config), NULL, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL codec_out");
  expect_status(fc_codec_new(S("{not json"), S(config), &codec, &err), FC_ERR_POLICY, &err, "bad policy");
  expect_status(fc_codec_new(S("\xff\xfe"), S(config), &codec, &err), FC_ERR_INVALID_ARGUMENT, &err, "non-UTF-8");
  expect_status(fc_codec_new(S(policy), S("{\"kms\": {\"local\": {}}, \"limit\": {}}"), &codec, &err), FC_ERR_CONFIG,
                &err, "unknown option");
  expect_status(fc_codec_new(S(policy), S("{\"kms\":"), &codec, &err), FC_ERR_CONFIG, &err, "bad config JSON");
  expect_status(fc_codec_new(S(policy), S("{\"kms\": {\"local\": {\"key_file\": \"/nonexistent\"}}}"), &codec, &err),
                FC_ERR_CONFIG, &err, "missing key file");
  char with_profile[4096];
  snprintf(with_profile, sizeof with_profile, "%.*s, \"profile\": \"nobody\"}", (int)strlen(config) - 1, config);
  expect_status(fc_codec_new(S(policy), S(with_profile), &codec, &err), FC_ERR_CONFIG, &err, "unknown profile");
  /* No error out-parameter: the status alone. */
  CHECK(fc_codec_new(S("{"), S(config), &codec, NULL) == FC_ERR_POLICY, "NULL err");
  CHECK(codec == NULL, "no codec made by failing calls");
  fc_codec_free(NULL);
}

static void test_round_trip(fc_codec *codec) {
  fc_error err = {0};
  fc_buf sealed = {0}, opened = {0};
  bytes headers = {0};
  put_u32(&headers, 2);
  put_opt(&headers, "trace", 5);
  put_opt(&headers, "abc", 3);
  put_opt(&headers, "empty", 5);
  put_opt(&headers, NULL, -1);

  expect_status(encrypt_one(codec, PLAIN, &headers, &sealed, &err), FC_OK, &err, "encrypt");
  record r;
  CHECK(unpack(sealed.data, &r) == sealed.data + sealed.len, "packed record consumed exactly");
  CHECK(r.key_len == 2 && memcmp(r.key, "k1", 2) == 0, "key unchanged");
  CHECK(r.value_len > 0 && memmem(r.value, (size_t)r.value_len, "hunter2", 7) == NULL, "password encrypted");
  CHECK(memmem(r.value, (size_t)r.value_len, "\"Ada\"", 5) != NULL, "name left alone");
  CHECK(r.n_headers == 3, "two headers + fieldcrypt, got %u", r.n_headers);
  CHECK(header_index(&r, "fieldcrypt") >= 0, "fieldcrypt header");
  int empty = header_index(&r, "empty");
  CHECK(empty >= 0 && r.value_lens[empty] == -1, "null header value kept");

  bytes back_headers = headers_of(&r);
  expect_status(fc_codec_decrypt(codec, S(TOPIC), r.key, r.key_len, r.value, r.value_len, back_headers.data,
                                 back_headers.len, &opened, &err),
                FC_OK, &err, "decrypt");
  record o;
  unpack(opened.data, &o);
  CHECK(o.value_len == (int64_t)strlen(PLAIN) && memcmp(o.value, PLAIN, strlen(PLAIN)) == 0, "plaintext back");
  CHECK(o.n_headers == 2 && header_index(&o, "fieldcrypt") < 0, "fieldcrypt header removed");

  /* Tampered ciphertext: flip a byte inside the encrypted password's Base64. */
  uint8_t *tampered = malloc((size_t)r.value_len);
  memcpy(tampered, r.value, (size_t)r.value_len);
  const uint8_t *pw = memmem(tampered, (size_t)r.value_len, "\"password\":\"", 12);
  CHECK(pw != NULL, "password field present");
  if (pw) tampered[(pw - tampered) + 14] ^= 0x01;
  fc_buf out = {0};
  expect_status(fc_codec_decrypt(codec, S(TOPIC), r.key, r.key_len, tampered, r.value_len, back_headers.data,
                                 back_headers.len, &out, &err),
                FC_ERR_CRYPTO, &err, "tampered ciphertext");
  CHECK(out.data == NULL, "no output on failure");
  free(tampered);

  /* A malformed fieldcrypt header. */
  bytes bad = {0};
  put_u32(&bad, 1);
  put_opt(&bad, "fieldcrypt", 10);
  put_opt(&bad, "\x01\x02\x03", 3);
  expect_status(fc_codec_decrypt(codec, S(TOPIC), r.key, r.key_len, r.value, r.value_len, bad.data, bad.len, &out, &err),
                FC_ERR_FORMAT, &err, "malformed fieldcrypt header");
  /* Encrypting a record that already carries one is refused (never encrypted twice). */
  expect_status(encrypt_one(codec, PLAIN, &back_headers, &out, &err), FC_ERR_RECORD, &err, "already encrypted");
  /* A record that is not JSON, for a JSON rule: nothing is sent in the clear. */
  expect_status(encrypt_one(codec, "not json", NULL, &out, &err), FC_ERR_RECORD, &err, "not JSON");
  CHECK(out.data == NULL, "fail closed");

  free(bad.data);
  free(back_headers.data);
  free(headers.data);
  fc_buf_free(&sealed);
  fc_buf_free(&opened);
  CHECK(sealed.data == NULL && sealed.len == 0, "fc_buf_free zeroes");
  fc_buf_free(&sealed); /* a zeroed buffer: no-op */
  fc_buf_free(NULL);
  fc_error_free(NULL);
}

static void test_absent_and_empty_parts(fc_codec *codec) {
  fc_error err = {0};
  fc_buf out = {0};
  record r;
  /* A tombstone with a null key passes through unchanged, with no header. */
  expect_status(fc_codec_encrypt(codec, S(TOPIC), NULL, -1, NULL, -1, NULL, 0, &out, &err), FC_OK, &err, "tombstone");
  unpack(out.data, &r);
  CHECK(r.key_len == -1 && r.value_len == -1 && r.n_headers == 0, "absent stays absent");
  fc_buf_free(&out);
  /* An empty key is not an absent one; a NULL pointer is fine for no bytes. */
  expect_status(fc_codec_encrypt(codec, S(TOPIC), NULL, 0, (const uint8_t *)PLAIN, (int64_t)strlen(PLAIN), NULL, 0,
                                 &out, &err),
                FC_OK, &err, "empty key");
  unpack(out.data, &r);
  CHECK(r.key_len == 0, "empty key stays empty");
  fc_buf_free(&out);
  /* A topic the policy selects nothing in: unchanged. */
  expect_status(fc_codec_encrypt(codec, S("elsewhere"), NULL, -1, (const uint8_t *)PLAIN, (int64_t)strlen(PLAIN),
                                 NULL, 0, &out, &err),
                FC_OK, &err, "unselected topic");
  unpack(out.data, &r);
  CHECK(r.value_len == (int64_t)strlen(PLAIN) && memcmp(r.value, PLAIN, strlen(PLAIN)) == 0, "unchanged");
  fc_buf_free(&out);
}

/* NULL handles, NULL out-parameters, lengths without bytes, bad UTF-8: never a crash. */
static void test_invalid_arguments(fc_codec *codec) {
  fc_error err = {0};
  fc_buf out = {0};
  fc_stats stats;
  const uint8_t *v = (const uint8_t *)PLAIN;
  int64_t n = (int64_t)strlen(PLAIN);
  int32_t (*calls[])(const fc_codec *, const uint8_t *, size_t, const uint8_t *, int64_t, const uint8_t *, int64_t,
                     const uint8_t *, size_t, fc_buf *, fc_error *) = {fc_codec_encrypt, fc_codec_decrypt};
  for (int i = 0; i < 2; i++) {
    const char *what = i == 0 ? "encrypt" : "decrypt";
    expect_status(calls[i](NULL, S(TOPIC), NULL, -1, v, n, NULL, 0, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, what);
    expect_status(calls[i](codec, NULL, 3, NULL, -1, v, n, NULL, 0, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, what);
    expect_status(calls[i](codec, S("\xc3\x28"), NULL, -1, v, n, NULL, 0, &out, &err), FC_ERR_INVALID_ARGUMENT, &err,
                  what);
    expect_status(calls[i](codec, S(TOPIC), NULL, 4, v, n, NULL, 0, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, what);
    expect_status(calls[i](codec, S(TOPIC), NULL, -1, NULL, 9, NULL, 0, &out, &err), FC_ERR_INVALID_ARGUMENT, &err,
                  what);
    expect_status(calls[i](codec, S(TOPIC), NULL, -1, v, n, NULL, 8, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, what);
    expect_status(calls[i](codec, S(TOPIC), NULL, -1, v, n, NULL, 0, NULL, &err), FC_ERR_INVALID_ARGUMENT, &err, what);
    CHECK(calls[i](codec, S(TOPIC), NULL, -1, v, n, NULL, 8, &out, NULL) == FC_ERR_INVALID_ARGUMENT, "NULL err");
  }
  expect_status(fc_codec_encrypt_batch(NULL, S(TOPIC), NULL, 0, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, "batch");
  expect_status(fc_codec_decrypt_batch(codec, S(TOPIC), NULL, 4, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, "batch");
  expect_status(fc_codec_encrypt_batch(codec, S(TOPIC), (const uint8_t *)"\0\0\0\0", 4, NULL, &err),
                FC_ERR_INVALID_ARGUMENT, &err, "batch out");
  expect_status(fc_codec_stats(NULL, &stats, &err), FC_ERR_INVALID_ARGUMENT, &err, "stats codec");
  expect_status(fc_codec_stats(codec, NULL, &err), FC_ERR_INVALID_ARGUMENT, &err, "stats out");
  expect_status(fc_codec_clear_key_cache(NULL, &err), FC_ERR_INVALID_ARGUMENT, &err, "clear");
  CHECK(out.data == NULL, "no output from failed calls");
}

/* Malformed packed data: every truncation of a valid header list and batch, and random bytes. */
static void test_malformed_packed_input(fc_codec *codec) {
  fc_error err = {0};
  fc_buf out = {0};
  bytes headers = {0};
  put_u32(&headers, 2);
  put_opt(&headers, "a", 1);
  put_opt(&headers, "1", 1);
  put_opt(&headers, "b", 1);
  put_opt(&headers, NULL, -1);
  const uint8_t *v = (const uint8_t *)PLAIN;
  int64_t n = (int64_t)strlen(PLAIN);
  for (size_t cut = 1; cut < headers.len; cut++) {
    expect_status(fc_codec_encrypt(codec, S(TOPIC), NULL, -1, v, n, headers.data, cut, &out, &err),
                  FC_ERR_INVALID_ARGUMENT, &err, "truncated headers (encrypt)");
    expect_status(fc_codec_decrypt(codec, S(TOPIC), NULL, -1, v, n, headers.data, cut, &out, &err),
                  FC_ERR_INVALID_ARGUMENT, &err, "truncated headers (decrypt)");
  }
  bytes batch = {0};
  put_u32(&batch, 2);
  for (int i = 0; i < 2; i++) {
    put_opt(&batch, NULL, -1);
    put_opt(&batch, PLAIN, n);
    put(&batch, headers.data, headers.len);
  }
  for (size_t cut = 0; cut < batch.len; cut++) {
    expect_status(fc_codec_encrypt_batch(codec, S(TOPIC), batch.data, cut, &out, &err), FC_ERR_INVALID_ARGUMENT, &err,
                  "truncated batch (encrypt)");
    expect_status(fc_codec_decrypt_batch(codec, S(TOPIC), batch.data, cut, &out, &err), FC_ERR_INVALID_ARGUMENT, &err,
                  "truncated batch (decrypt)");
  }
  /* A count far beyond the data is refused before anything is allocated for it. */
  const uint8_t huge[] = {0xff, 0xff, 0xff, 0x7f};
  expect_status(fc_codec_encrypt_batch(codec, S(TOPIC), huge, 4, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, "huge");
  expect_status(fc_codec_encrypt(codec, S(TOPIC), NULL, -1, v, n, huge, 4, &out, &err), FC_ERR_INVALID_ARGUMENT, &err,
                "huge headers");
  /* Random bytes as headers, batches, and as the value of the fieldcrypt header: some status,
   * never a crash. */
  srand(1234);
  for (int round = 0; round < 300; round++) {
    uint8_t junk[64];
    size_t len = (size_t)(rand() % (int)sizeof junk);
    for (size_t i = 0; i < len; i++) junk[i] = (uint8_t)(rand() % 4 == 0 ? 0 : rand());
    int32_t s = fc_codec_decrypt(codec, S(TOPIC), NULL, -1, v, n, junk, len, &out, &err);
    fc_error_free(&err);
    fc_buf_free(&out);
    CHECK(s == FC_OK || s == FC_ERR_INVALID_ARGUMENT || s == FC_ERR_FORMAT, "random headers: %d", s);
    s = fc_codec_encrypt_batch(codec, S(TOPIC), junk, len, &out, &err);
    fc_error_free(&err);
    fc_buf_free(&out);
    CHECK(s == FC_OK || s == FC_ERR_INVALID_ARGUMENT || s == FC_ERR_RECORD, "random batch: %d", s);
    bytes h = {0};
    put_u32(&h, 1);
    put_opt(&h, "fieldcrypt", 10);
    put_opt(&h, junk, (int64_t)len);
    s = fc_codec_decrypt(codec, S(TOPIC), NULL, -1, v, n, h.data, h.len, &out, &err);
    fc_error_free(&err);
    fc_buf_free(&out);
    free(h.data);
    CHECK(s == FC_ERR_FORMAT || s == FC_ERR_UNSUPPORTED_VERSION || s == FC_ERR_CRYPTO || s == FC_ERR_KEY_NOT_FOUND,
          "random fieldcrypt header: %d", s);
  }
  free(headers.data);
  free(batch.data);
}

static void test_batches(fc_codec *codec) {
  fc_error err = {0};
  fc_buf sealed = {0}, opened = {0};
  const char *values[] = {PLAIN, "{\"id\":8,\"password\":\"pw8\"}", "{\"id\":9}"};
  bytes batch = {0};
  put_u32(&batch, 3);
  for (int i = 0; i < 3; i++) {
    put_opt(&batch, "k", 1);
    put_opt(&batch, values[i], (int64_t)strlen(values[i]));
    put_u32(&batch, 0);
  }
  expect_status(fc_codec_encrypt_batch(codec, S(TOPIC), batch.data, batch.len, &sealed, &err), FC_OK, &err, "batch");
  const uint8_t *p = sealed.data;
  CHECK(get_u32(&p) == 3, "three records out");
  /* Decrypt the batch as it came out. */
  expect_status(fc_codec_decrypt_batch(codec, S(TOPIC), sealed.data, sealed.len, &opened, &err), FC_OK, &err, "back");
  p = opened.data;
  CHECK(get_u32(&p) == 3, "three records back");
  for (int i = 0; i < 3; i++) {
    record r;
    p = unpack(p, &r);
    CHECK(r.value_len == (int64_t)strlen(values[i]) && memcmp(r.value, values[i], strlen(values[i])) == 0,
          "record %d back", i);
  }
  CHECK(p == opened.data + opened.len, "batch consumed exactly");
  /* The second record is not JSON: the batch fails there, with its index, and gives nothing. */
  bytes bad = {0};
  put_u32(&bad, 3);
  for (int i = 0; i < 3; i++) {
    put_opt(&bad, NULL, -1);
    put_opt(&bad, i == 1 ? "nope" : values[i], i == 1 ? 4 : (int64_t)strlen(values[i]));
    put_u32(&bad, 0);
  }
  fc_buf out = {0};
  int32_t s = fc_codec_encrypt_batch(codec, S(TOPIC), bad.data, bad.len, &out, &err);
  CHECK(s == FC_ERR_RECORD && err.index == 1, "status %d index %lld", s, (long long)err.index);
  CHECK(out.data == NULL, "no output");
  fc_error_free(&err);
  CHECK(err.index == -1 && err.message.data == NULL, "fc_error_free resets");
  free(batch.data);
  free(bad.data);
  fc_buf_free(&sealed);
  fc_buf_free(&opened);
}

static void test_unknown_key(const char *policy, fc_codec *codec) {
  /* A consumer whose local KMS does not have the producer's key. */
  fc_error err = {0};
  fc_codec *stranger = NULL;
  expect_status(fc_codec_new(S(policy), S("{\"kms\": {\"local\": {\"secrets\": {\"other\": \"x\"}}}}"), &stranger, &err),
                FC_OK, &err, "stranger");
  fc_buf sealed = {0}, out = {0};
  expect_status(encrypt_one(codec, PLAIN, NULL, &sealed, &err), FC_OK, &err, "encrypt");
  record r;
  unpack(sealed.data, &r);
  bytes h = headers_of(&r);
  /* By default a field the consumer cannot decrypt stays ciphertext; the record is returned. */
  expect_status(fc_codec_decrypt(stranger, S(TOPIC), r.key, r.key_len, r.value, r.value_len, h.data, h.len, &out, &err),
                FC_OK, &err, "stranger decrypt");
  record o;
  unpack(out.data, &o);
  CHECK(memmem(o.value, (size_t)o.value_len, "hunter2", 7) == NULL, "no plaintext for a stranger");
  fc_stats stats;
  expect_status(fc_codec_stats(stranger, &stats, &err), FC_OK, &err, "stats");
  CHECK(stats.fields_withheld >= 1, "withheld %llu", (unsigned long long)stats.fields_withheld);
  free(h.data);
  fc_buf_free(&sealed);
  fc_buf_free(&out);
  fc_codec_free(stranger);
}

static void test_stats_and_cache(fc_codec *codec) {
  fc_error err = {0};
  fc_stats before, after;
  expect_status(fc_codec_stats(codec, &before, &err), FC_OK, &err, "stats");
  fc_buf out = {0};
  expect_status(encrypt_one(codec, PLAIN, NULL, &out, &err), FC_OK, &err, "encrypt");
  fc_buf_free(&out);
  expect_status(fc_codec_stats(codec, &after, &err), FC_OK, &err, "stats");
  CHECK(after.records_encrypted == before.records_encrypted + 1, "records_encrypted +1");
  CHECK(after.fields_encrypted == before.fields_encrypted + 2, "two fields");
  CHECK(after.deks_created >= 1, "a DEK");
  expect_status(fc_codec_clear_key_cache(codec, &err), FC_OK, &err, "clear");
}

/* One codec from four threads at once. */
typedef struct {
  fc_codec *codec;
  int ok;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  fc_error err = {0};
  for (int i = 0; i < 50; i++) {
    char value[128];
    snprintf(value, sizeof value, "{\"id\":%d,\"password\":\"pw-%d\"}", i, i);
    fc_buf sealed = {0}, opened = {0};
    if (encrypt_one(w->codec, value, NULL, &sealed, &err) != FC_OK) {
      fc_error_free(&err);
      return NULL;
    }
    record r;
    unpack(sealed.data, &r);
    bytes h = headers_of(&r);
    int32_t s = fc_codec_decrypt(w->codec, S(TOPIC), r.key, r.key_len, r.value, r.value_len, h.data, h.len, &opened,
                                 &err);
    free(h.data);
    if (s == FC_OK) {
      record o;
      unpack(opened.data, &o);
      if (o.value_len == (int64_t)strlen(value) && memcmp(o.value, value, strlen(value)) == 0) w->ok++;
    }
    fc_error_free(&err);
    fc_buf_free(&sealed);
    fc_buf_free(&opened);
  }
  return NULL;
}

static void test_threads(fc_codec *codec) {
  pthread_t threads[4];
  worker workers[4];
  for (int i = 0; i < 4; i++) {
    workers[i] = (worker){codec, 0};
    pthread_create(&threads[i], NULL, work, &workers[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    CHECK(workers[i].ok == 50, "thread %d: %d of 50 round trips", i, workers[i].ok);
  }
}

/* Per-subject keys with a file key store: shred, rotate, and their error paths. */
static void test_shred_and_rotate(fc_codec *no_store) {
  fc_error err = {0};
  char store_path[] = "/tmp/fieldcrypt-c-test-XXXXXX";
  int fd = mkstemp(store_path);
  CHECK(fd >= 0, "mkstemp");
  close(fd);
  const char *policy =
      "{\"fieldcrypt_policy\": 1, \"id\": \"c-shred\", \"encrypt\": [{\"name\": \"r\", \"topics\": [\"t\"], "
      "\"fields\": [\"email\"], \"key\": \"local://k\", \"subject\": \"id\"}], "
      "\"profiles\": {\"strict\": {\"decrypt\": [{\"topics\": [\"*\"]}], \"otherwise\": \"error\"}}}";
  char config[512], strict[600];
  snprintf(config, sizeof config,
           "{\"kms\": {\"local\": {\"secrets\": {\"k\": \"c\"}}}, \"key_store\": {\"file\": \"%s\", \"refresh\": 0}}",
           store_path);
  snprintf(strict, sizeof strict, "%.*s, \"profile\": \"strict\"}", (int)strlen(config) - 1, config);
  fc_codec *producer = NULL, *consumer = NULL;
  expect_status(fc_codec_new(S(policy), S(config), &producer, &err), FC_OK, &err, "producer with a key store");
  expect_status(fc_codec_new(S(policy), S(strict), &consumer, &err), FC_OK, &err, "strict consumer");
  if (!producer || !consumer) return;
  const char *value = "{\"id\":\"cust-1\",\"email\":\"a@b.c\"}";
  fc_buf sealed = {0}, out = {0};
  expect_status(fc_codec_encrypt(producer, S("t"), NULL, -1, (const uint8_t *)value, (int64_t)strlen(value), NULL, 0,
                                 &sealed, &err),
                FC_OK, &err, "encrypt under a subject key");
  record r;
  unpack(sealed.data, &r);
  bytes h = headers_of(&r);
  expect_status(fc_codec_decrypt(consumer, S("t"), NULL, -1, r.value, r.value_len, h.data, h.len, &out, &err), FC_OK,
                &err, "decrypt before the shred");
  fc_buf_free(&out);
  expect_status(fc_codec_rotate_subject(producer, S("cust-1"), &err), FC_OK, &err, "rotate");
  uint64_t keys = 0;
  expect_status(fc_codec_shred(producer, S("cust-1"), &keys, &err), FC_OK, &err, "shred");
  CHECK(keys == 2, "the subject's two keys deleted, got %llu", (unsigned long long)keys);
  expect_status(fc_codec_decrypt(consumer, S("t"), NULL, -1, r.value, r.value_len, h.data, h.len, &out, &err),
                FC_ERR_SHREDDED, &err, "decrypt after the shred");
  expect_status(fc_codec_shred(producer, S("cust-2"), NULL, &err), FC_OK, &err, "shred, no count wanted");
  expect_status(fc_codec_shred(no_store, S("cust-1"), &keys, &err), FC_ERR_CONFIG, &err, "no key store");
  expect_status(fc_codec_rotate_subject(no_store, S("cust-1"), &err), FC_ERR_CONFIG, &err, "no key store");
  expect_status(fc_codec_shred(NULL, S("x"), &keys, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL codec");
  expect_status(fc_codec_shred(producer, NULL, 3, &keys, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL subject");
  expect_status(fc_codec_rotate_subject(producer, S("\xff"), &err), FC_ERR_INVALID_ARGUMENT, &err, "non-UTF-8");
  free(h.data);
  fc_buf_free(&sealed);
  fc_codec_free(producer);
  fc_codec_free(consumer);
  unlink(store_path);
}


/* A policy followed from a file and verified against trusted keys: reload, status, rejection. */
static void copy_file(const char *from, const char *to) {
  size_t n;
  char *text = read_file(from, &n);
  FILE *f = fopen(to, "wb");
  CHECK(f != NULL && fwrite(text, 1, n, f) == n, "write %s", to);
  if (f) fclose(f);
  free(text);
}

static int encrypts(fc_codec *codec, const char *needle) {
  const char *value = "{\"customer_id\":\"c-1\",\"email\":\"c-1@example.com\",\"card\":\"4111-c-1\"}";
  fc_buf sealed = {0};
  fc_error err = {0};
  expect_status(fc_codec_encrypt(codec, S("customers-c"), NULL, -1, (const uint8_t *)value, (int64_t)strlen(value),
                                 NULL, 0, &sealed, &err),
                FC_OK, &err, "encrypt under the followed policy");
  record r;
  unpack(sealed.data, &r);
  int hidden = memmem(r.value, (size_t)r.value_len, needle, strlen(needle)) == NULL;
  fc_buf_free(&sealed);
  return hidden;
}

static int status_has(fc_codec *codec, const char *needle) {
  fc_buf status = {0};
  fc_error err = {0};
  expect_status(fc_codec_policy_status(codec, &status, &err), FC_OK, &err, "policy status");
  int found = status.data && memmem(status.data, status.len, needle, strlen(needle)) != NULL;
  fc_buf_free(&status);
  return found;
}

static void test_policy_source(const char *governance, fc_codec *fixed) {
  fc_error err = {0};
  char path[1024], policy_path[] = "/tmp/fieldcrypt-c-policy-XXXXXX", store_path[] = "/tmp/fieldcrypt-c-keys-XXXXXX";
  int fd = mkstemp(policy_path), fd2 = mkstemp(store_path);
  CHECK(fd >= 0 && fd2 >= 0, "mkstemp");
  close(fd);
  close(fd2);
  snprintf(path, sizeof path, "%s/trusted-keys.json", governance);
  size_t n;
  char *trusted = read_file(path, &n);
  char config[4096];
  snprintf(config, sizeof config,
           "{\"kms\": {\"local\": {\"secrets\": {\"governance\": \"c\"}}}, \"trusted_keys\": %s, "
           "\"key_store\": {\"file\": \"%s\", \"refresh\": 0}, "
           "\"policy_source\": {\"file\": \"%s\", \"policy_id\": \"governance-demo\", \"manual\": true}}",
           trusted, store_path, policy_path);
  free(trusted);
  snprintf(path, sizeof path, "%s/policy-r1.signed.json", governance);
  copy_file(path, policy_path);

  fc_codec *codec = NULL;
  expect_status(fc_codec_new(NULL, 0, S(config), &codec, &err), FC_OK, &err, "codec following a file");
  if (!codec) return;
  CHECK(encrypts(codec, "c-1@example.com") && !encrypts(codec, "4111-c-1"), "revision 1: email only");
  CHECK(status_has(codec, "\"revision\":1") && status_has(codec, "\"signed_by\":\"governance-test\""), "status r1");
  bool loaded = true;
  expect_status(fc_codec_reload(codec, &loaded, &err), FC_OK, &err, "reload, nothing new");
  CHECK(!loaded, "nothing new loaded");

  snprintf(path, sizeof path, "%s/policy-r2.tampered.json", governance);
  copy_file(path, policy_path);
  int32_t s = fc_codec_reload(codec, &loaded, &err);
  CHECK(s == FC_ERR_POLICY && err.message.data && strstr((const char *)err.message.data, "does not verify") &&
            !strstr((const char *)err.message.data, "card"),
        "tampered policy refused, without its text: %d %s", s, err.message.data ? (char *)err.message.data : "");
  fc_error_free(&err);
  CHECK(status_has(codec, "\"revision\":1") && status_has(codec, "\"rejections\":1"), "r1 stays, one rejection");
  CHECK(status_has(codec, "\"last_error\":{\"kind\":\"policy\""), "last error recorded");

  snprintf(path, sizeof path, "%s/policy-r2.signed.json", governance);
  copy_file(path, policy_path);
  expect_status(fc_codec_reload(codec, NULL, &err), FC_OK, &err, "reload r2, no flag wanted");
  CHECK(status_has(codec, "\"revision\":2"), "revision 2 in force");
  CHECK(encrypts(codec, "4111-c-1"), "revision 2: card encrypted too");

  /* Errors: a fixed policy has nothing to reload; NULLs; policy and source together. */
  expect_status(fc_codec_reload(fixed, &loaded, &err), FC_ERR_CONFIG, &err, "fixed policy");
  CHECK(status_has(fixed, "\"source\":null") && status_has(fixed, "\"loads\":1"), "fixed status");
  expect_status(fc_codec_reload(NULL, &loaded, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL codec");
  expect_status(fc_codec_policy_status(codec, NULL, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL status_out");
  fc_buf status = {0};
  expect_status(fc_codec_policy_status(NULL, &status, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL codec");
  CHECK(status.data == NULL, "no status on failure");
  fc_codec *other = NULL;
  snprintf(path, sizeof path, "%s/policy-r1.json", governance);
  char *bare = read_file(path, &n);
  expect_status(fc_codec_new((const uint8_t *)bare, n, S(config), &other, &err), FC_ERR_CONFIG, &err,
                "policy and policy_source");
  expect_status(fc_codec_new(NULL, 0, S("{\"kms\": {\"local\": {}}}"), &other, &err), FC_ERR_CONFIG, &err,
                "no policy at all");
  CHECK(other == NULL, "no codec made");
  free(bare);
  fc_codec_free(codec);
  unlink(policy_path);
  unlink(store_path);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s POLICY_FILE KEY_FILE GOVERNANCE_FIXTURES_DIR\n", argv[0]);
    return 2;
  }
  size_t policy_len;
  char *policy = read_file(argv[1], &policy_len);
  char config[2048];
  snprintf(config, sizeof config, "{\"kms\": {\"local\": {\"key_file\": \"%s\"}}}", argv[2]);

  test_version_and_status_names();
  test_codec_new_errors(policy, config);
  fc_error err = {0};
  fc_codec *codec = NULL;
  expect_status(fc_codec_new((const uint8_t *)policy, policy_len, S(config), &codec, &err), FC_OK, &err, "codec");
  if (!codec) return 1;
  test_round_trip(codec);
  test_absent_and_empty_parts(codec);
  test_invalid_arguments(codec);
  test_malformed_packed_input(codec);
  test_batches(codec);
  test_unknown_key(policy, codec);
  test_stats_and_cache(codec);
  test_threads(codec);
  test_shred_and_rotate(codec);
  test_policy_source(argv[3], codec);
  fc_codec_free(codec);
  free(policy);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
