/* A tight C loop over fc_codec_encrypt / fc_codec_decrypt on the standard workload's JSON
 * payment record: the ABI's cost with no managed runtime around it, the floor every binding's
 * figure is compared with (docs/PERFORMANCE.md). Run by ffi/tests/run-c-tests.sh bench.
 *
 *   bench_ffi POLICY_FILE KEY_FILE RECORD_FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fieldcrypt.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static size_t slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

static void fail(fc_error *e) {
  fprintf(stderr, "%s: %.*s\n", fc_status_name(e->status), (int)e->message.len, (const char *)e->message.data);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  static char policy[1 << 16], value[1 << 16], config[4096];
  size_t policy_len = slurp(argv[1], policy, sizeof policy);
  size_t value_len = slurp(argv[3], value, sizeof value);
  while (value_len && (value[value_len - 1] == '\n' || value[value_len - 1] == ' ')) value_len--;
  snprintf(config, sizeof config, "{\"kms\": {\"local\": {\"key_file\": \"%s\"}}}", argv[2]);
  fc_error err = {0};
  fc_codec *producer = NULL, *consumer = NULL;
  if (fc_codec_new((const uint8_t *)policy, policy_len, (const uint8_t *)config, strlen(config), &producer, &err) ||
      fc_codec_new((const uint8_t *)policy, policy_len, (const uint8_t *)config, strlen(config), &consumer, &err))
    fail(&err);
  const uint8_t *topic = (const uint8_t *)"payments";
  /* One sealed record for the decrypt loop: its value and its packed headers. */
  fc_buf sealed = {0};
  if (fc_codec_encrypt(producer, topic, 8, NULL, -1, (const uint8_t *)value, (int64_t)value_len, NULL, 0, &sealed, &err))
    fail(&err);
  const uint8_t *p = sealed.data + 4; /* absent key */
  uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  const uint8_t *sealed_value = p + 4, *headers = p + 4 + n;
  size_t headers_len = (size_t)(sealed.data + sealed.len - headers);

  const int calls = 200000;
  for (int round = 0; round < 3; round++) {
    double t = now();
    for (int i = 0; i < calls; i++) {
      fc_buf out = {0};
      if (fc_codec_encrypt(producer, topic, 8, NULL, -1, (const uint8_t *)value, (int64_t)value_len, NULL, 0, &out,
                           &err))
        fail(&err);
      fc_buf_free(&out);
    }
    double enc = (now() - t) / calls * 1e6;
    t = now();
    for (int i = 0; i < calls; i++) {
      fc_buf out = {0};
      if (fc_codec_decrypt(consumer, topic, 8, NULL, -1, sealed_value, n, headers, headers_len, &out, &err)) fail(&err);
      fc_buf_free(&out);
    }
    double dec = (now() - t) / calls * 1e6;
    printf("C loop, round %d: encrypt %.3f µs/op, decrypt %.3f µs/op\n", round + 1, enc, dec);
  }
  fc_buf_free(&sealed);
  fc_codec_free(producer);
  fc_codec_free(consumer);
  return 0;
}
