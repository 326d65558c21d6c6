/* The minimal Kafka client of fieldcrypt_kafka.h from C: its error paths always, and when
 * FIELDCRYPT_KAFKA names a broker, one encrypted record produced and consumed back through it.
 *
 *   FIELDCRYPT_KAFKA=127.0.0.1:9092 test_ffi_kafka
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fieldcrypt_kafka.h"

static int failures = 0;
#define CHECK(cond, what)                                     \
  do {                                                        \
    if (!(cond)) {                                            \
      failures++;                                             \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what); \
    }                                                         \
  } while (0)
#define S(lit) (const uint8_t *)(lit), strlen(lit)

static void expect(int32_t got, int32_t want, fc_error *err, const char *what) {
  if (got != want) {
    failures++;
    fprintf(stderr, "FAIL %s: status %d (%s), want %d: %.*s\n", what, got, fc_status_name(got), want,
            (int)err->message.len, err->message.data ? (const char *)err->message.data : "");
  }
  fc_error_free(err);
}

int main(void) {
  srand((unsigned)time(NULL));
  fc_error err = {0};
  fc_kafka_producer *producer = NULL;
  fc_kafka_consumer *consumer = NULL;
  fc_buf out = {0};

  expect(fc_kafka_producer_new(NULL, 3, &producer, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL config");
  expect(fc_kafka_producer_new(S("[1]"), &producer, &err), FC_ERR_INVALID_ARGUMENT, &err, "not an object");
  expect(fc_kafka_producer_new(S("{\"acks\": 1}"), &producer, &err), FC_ERR_INVALID_ARGUMENT, &err, "not strings");
  expect(fc_kafka_producer_new(S("{\"no.such.property\": \"1\"}"), &producer, &err), FC_ERR_KAFKA, &err, "bad prop");
  expect(fc_kafka_producer_new(S("{}"), NULL, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL out");
  expect(fc_kafka_consumer_new(S("{\"group.id\": \"g\"}"), S("a,,b"), &consumer, &err), FC_ERR_INVALID_ARGUMENT, &err,
         "empty topic name");
  expect(fc_kafka_produce(NULL, S("t"), NULL, 0, 100, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL producer");
  expect(fc_kafka_consumer_poll(NULL, 10, &out, &err), FC_ERR_INVALID_ARGUMENT, &err, "NULL consumer");
  fc_kafka_producer_free(NULL);
  fc_kafka_consumer_free(NULL);
  CHECK(producer == NULL && consumer == NULL, "no handles from failed calls");

  const char *broker = getenv("FIELDCRYPT_KAFKA");
  if (!broker || !*broker) {
    printf("kafka C test: error paths passed; no FIELDCRYPT_KAFKA, broker round trip not run\n");
    return failures ? 1 : 0;
  }
  const char *policy =
      "{\"fieldcrypt_policy\": 1, \"id\": \"c-kafka\", \"encrypt\": [{\"name\": \"secrets\", \"topics\": "
      "[\"ffi-c-*\"], \"fields\": [\"password\"], \"key\": \"local://c-test\"}]}";
  const char *config = "{\"kms\": {\"local\": {\"secrets\": {\"c-test\": \"not a production key\"}}}}";
  char kconfig[512], cconfig[512], topic[64];
  snprintf(kconfig, sizeof kconfig, "{\"bootstrap.servers\": \"%s\"}", broker);
  snprintf(topic, sizeof topic, "ffi-c-%ld-%d", (long)time(NULL), rand() % 100000);
  snprintf(cconfig, sizeof cconfig,
           "{\"bootstrap.servers\": \"%s\", \"group.id\": \"%s\", \"auto.offset.reset\": \"earliest\"}", broker, topic);
  fc_codec *codec = NULL;
  expect(fc_codec_new(S(policy), S(config), &codec, &err), FC_OK, &err, "codec");
  const char *plain = "{\"name\":\"Ada\",\"password\":\"hunter2\"}";
  fc_buf sealed = {0};
  expect(fc_codec_encrypt(codec, S(topic), NULL, -1, (const uint8_t *)plain, (int64_t)strlen(plain), NULL, 0, &sealed,
                          &err),
         FC_OK, &err, "encrypt");
  expect(fc_kafka_producer_new(S(kconfig), &producer, &err), FC_OK, &err, "producer");
  expect(fc_kafka_produce(producer, S(topic), sealed.data, sealed.len, 30000, &err), FC_OK, &err, "produce");
  expect(fc_kafka_consumer_new(S(cconfig), S(topic), &consumer, &err), FC_OK, &err, "consumer");
  for (int i = 0; i < 60 && out.len == 0; i++) {
    expect(fc_kafka_consumer_poll(consumer, 1000, &out, &err), FC_OK, &err, "poll");
  }
  CHECK(out.len == sealed.len && memcmp(out.data, sealed.data, sealed.len) == 0,
        "the broker gave back exactly the encrypted record, headers included");
  fc_buf_free(&out);
  fc_buf_free(&sealed);
  fc_kafka_consumer_free(consumer);
  fc_kafka_producer_free(producer);
  fc_codec_free(codec);
  printf("kafka C test: error paths and a broker round trip through %s: %d failed\n", broker, failures);
  return failures ? 1 : 0;
}
