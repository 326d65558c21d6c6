// Cross-language: records encrypted in C# decrypt with the Rust CLI and the reverse; and a real
// broker (FIELDCRYPT_KAFKA) through the Kafka test aid.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using Fieldcrypt.Kafka;
using static Fieldcrypt.Tests.Fixtures;

namespace Fieldcrypt.Tests
{
    internal static class InteropTests
    {
        public static void Register(List<KeyValuePair<string, Action>> t)
        {
            t.Add(new KeyValuePair<string, Action>("rust CLI encrypts, C# decrypts", RustToCSharp));
            t.Add(new KeyValuePair<string, Action>("C# encrypts, rust CLI decrypts", CSharpToRust));
            t.Add(new KeyValuePair<string, Action>("kafka aid: client errors", KafkaClientErrors));
            t.Add(new KeyValuePair<string, Action>("broker: encrypt, produce, consume, decrypt", Broker));
        }

        private static List<Record> Records()
        {
            return Enumerable.Range(0, 5).Select(i => new Record(i == 4 ? null : Utf8("k" + i),
                Customer("c" + i, "pw-" + i), Headers("trace", "t" + i))).ToList();
        }

        private static void RustToCSharp()
        {
            List<Record> records = Records();
            List<Record> sealedRecs = Cli.Run("encrypt", "customers", records);
            using (Codec codec = MakeCodec())
            {
                for (int i = 0; i < records.Count; i++)
                {
                    Assert.True(!Contains(sealedRecs[i].Value, "pw-") && sealedRecs[i].GetHeader(Codec.HeaderName) != null, "the CLI encrypted " + i);
                    Assert.Record(records[i], codec.Decrypt("customers", sealedRecs[i].Key, sealedRecs[i].Value, sealedRecs[i].Headers), "record " + i);
                }
                IList<Record> batch = codec.DecryptBatch("customers", sealedRecs);
                for (int i = 0; i < records.Count; i++) Assert.Record(records[i], batch[i], "batch record " + i);
            }
        }

        private static void CSharpToRust()
        {
            List<Record> records = Records();
            IList<Record> sealedRecs;
            using (Codec codec = MakeCodec()) sealedRecs = codec.EncryptBatch("customers", records);
            List<Record> opened = Cli.Run("decrypt", "customers", sealedRecs);
            for (int i = 0; i < records.Count; i++) Assert.Record(records[i], opened[i], "record " + i);
            List<Record> partial = Cli.Run("decrypt", "customers", sealedRecs, "--profile", "visa-only");
            for (int i = 0; i < records.Count; i++)
            {
                Assert.Equal("4111-1111-1111-1111", Field(partial[i].Value, "visa"), "visa decrypted");
                Assert.True(Field(partial[i].Value, "password") != "pw-" + i, "password withheld");
                Assert.True(partial[i].GetHeader(Codec.HeaderName) != null, "header kept");
            }
        }

        private static void KafkaClientErrors()
        {
            Assert.Fails<KafkaClientException>(() => new Producer("{\"no.such.property\": \"x\"}").Dispose(), "kafka", "unknown librdkafka property");
            Assert.Fails<KafkaClientException>(() => new Consumer("{\"bootstrap.servers\": \"127.0.0.1:1\"}", "t").Dispose(), "kafka", "consumer without group.id");
        }

        private static void Broker()
        {
            string kafka = Environment.GetEnvironmentVariable("FIELDCRYPT_KAFKA");
            if (string.IsNullOrEmpty(kafka))
            {
                // Fail, never skip, when the servers were asked for.
                if (Environment.GetEnvironmentVariable("FIELDCRYPT_SERVER_TESTS") == "1")
                    throw new Exception("FIELDCRYPT_SERVER_TESTS=1 but FIELDCRYPT_KAFKA is not set: scripts/servers.sh start kafka && eval \"$(scripts/servers.sh env)\"");
                throw new SkipException("FIELDCRYPT_KAFKA is not set");
            }
            string topic = "payments-cs-" + Guid.NewGuid().ToString("N");
            byte[] payment = JsonPayment();
            var plain = Enumerable.Range(0, 5).Select(i => new Record(Utf8("k" + i),
                Utf8(System.Text.Encoding.UTF8.GetString(payment).Replace("jane.doe@", "jane.doe+" + i + "@")),
                Headers("source", "csharp-binding", "n", "" + i))).ToList();
            using (Codec producerCodec = MakeCodec())
            using (var producer = new Producer("{\"bootstrap.servers\": " + Json.Quote(kafka) + "}"))
            {
                foreach (Record r in plain) producer.Produce(topic, producerCodec.Encrypt(topic, r.Key, r.Value, r.Headers));
            }
            var received = new List<Record>();
            string consumerConfig = "{\"bootstrap.servers\": " + Json.Quote(kafka) + ", \"group.id\": " + Json.Quote("fieldcrypt-cs-" + Guid.NewGuid())
                + ", \"auto.offset.reset\": \"earliest\"}";
            using (var consumer = new Consumer(consumerConfig, topic))
            {
                var clock = Stopwatch.StartNew();
                while (received.Count < plain.Count && clock.Elapsed < TimeSpan.FromSeconds(60))
                {
                    Record r = consumer.Poll(1000);
                    if (r != null) received.Add(r);
                }
            }
            Assert.Equal(plain.Count, received.Count, "records consumed from " + topic);
            using (Codec consumerCodec = MakeCodec())
            {
                for (int i = 0; i < plain.Count; i++)
                {
                    foreach (string secret in Pii.Skip(1)) Assert.True(!Contains(received[i].Value, secret), secret + " in the clear on the broker");
                    Assert.True(received[i].GetHeader(Codec.HeaderName) != null, "the fieldcrypt header went through Kafka");
                    Record opened = consumerCodec.Decrypt(topic, received[i].Key, received[i].Value, received[i].Headers);
                    Assert.True(Json.DeepEquals(Json.Parse(plain[i].Value), Json.Parse(opened.Value)), "record " + i + " decrypted");
                    Assert.Bytes(plain[i].Key, opened.Key, "key " + i);
                    Assert.Headers(plain[i].Headers, opened.Headers, "headers " + i);
                }
                Assert.Equal(20UL, consumerCodec.Stats().FieldsDecrypted, "4 fields x 5 records");
            }
        }
    }
}
