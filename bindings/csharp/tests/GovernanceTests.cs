// Signed policies followed from a source (schemas/governance/README.md): a file source with
// Reload and PolicyStatus (any library), the configuration errors of the library without
// librdkafka, and the broker scenario on the Kafka-capable library (policy on a Kafka topic, data
// keys in a Kafka key store, shredding seen by a fresh and a running consumer).
//
// Which library the Codec runs on is the test run's choice: run-tests.sh runs the suite on
// libfieldcrypt_ffi, then the governance tests again with a dllmap pointing "fieldcrypt_ffi" at
// libfieldcrypt_ffi_kafka.so and FIELDCRYPT_CODEC_LIBRARY=fieldcrypt_ffi_kafka. The tests that need
// one library are registered only in its run; the "native library" test checks the choice took.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using Fieldcrypt.Kafka;
using static Fieldcrypt.Tests.Fixtures;

namespace Fieldcrypt.Tests
{
    internal static class GovernanceTests
    {
        private static readonly string Dir = Path.Combine(Schemas, "governance");

        /// <summary>True when the Codec's DllImport is mapped to libfieldcrypt_ffi_kafka.</summary>
        public static readonly bool KafkaLibrary = Environment.GetEnvironmentVariable("FIELDCRYPT_CODEC_LIBRARY") == "fieldcrypt_ffi_kafka";

        public static void Register(List<KeyValuePair<string, Action>> t)
        {
            t.Add(new KeyValuePair<string, Action>("governance: the codec's native library (" + (KafkaLibrary ? "fieldcrypt_ffi_kafka" : "fieldcrypt_ffi") + ")", NativeLibrary));
            t.Add(new KeyValuePair<string, Action>("governance: file policy source, tampered revision refused, Reload", FileSource));
            t.Add(new KeyValuePair<string, Action>("governance: fixed policy: PolicyStatus, Reload is a config error", FixedPolicy));
            t.Add(new KeyValuePair<string, Action>("governance: FromConfig errors (no policy_source, unsigned, bad argument)", FromConfigErrors));
            if (KafkaLibrary)
                t.Add(new KeyValuePair<string, Action>("governance: broker scenario (kafka policy source and key store, shredding)", BrokerScenario));
            else
                t.Add(new KeyValuePair<string, Action>("governance: kafka key_store and policy_source without librdkafka: config error", NoKafkaInLibrary));
        }

        private static string Fixture(string name)
        {
            return File.ReadAllText(Path.Combine(Dir, name));
        }

        private static string Config(string policySource, string extra = null)
        {
            return "{\"kms\": {\"local\": {\"secrets\": {\"governance\": \"governance-test-secret\"}}}, "
                + "\"trusted_keys\": " + Fixture("trusted-keys.json") + ", "
                + "\"policy_source\": " + policySource
                + (extra == null ? "" : ", " + extra) + "}";
        }

        private static byte[] CustomerRecord(string id)
        {
            return Utf8("{\"customer_id\":" + Json.Quote(id) + ",\"email\":" + Json.Quote(id + "@example.com")
                + ",\"card\":" + Json.Quote("4111-" + id) + "}");
        }

        /// <summary>Which of the customer's PII fields the encrypted record still shows.</summary>
        private static string InClear(Record r, string id)
        {
            var shown = new List<string>();
            if (Contains(r.Value, id + "@example.com")) shown.Add("email");
            if (Contains(r.Value, "4111-" + id)) shown.Add("card");
            return string.Join(",", shown);
        }

        private static Record Encrypt(Codec codec, string topic, string id)
        {
            Record r = codec.Encrypt(topic, null, CustomerRecord(id), null);
            Assert.True(r.GetHeader(Codec.HeaderName) != null, "a fieldcrypt header");
            return r;
        }

        private static void NativeLibrary()
        {
            Assert.True(!string.IsNullOrEmpty(Codec.Version), "the codec's library answers");
            // Which file backs "fieldcrypt_ffi" (Linux: the process's mappings).
            string maps = File.ReadAllText("/proc/self/maps");
            bool plainLoaded = maps.Split('\n').Any(l => l.EndsWith("/libfieldcrypt_ffi.so"));
            if (KafkaLibrary)
            {
                Assert.True(!plainLoaded, "the dllmap put the codec on libfieldcrypt_ffi_kafka.so, yet libfieldcrypt_ffi.so is loaded");
                Assert.True(maps.Contains("/libfieldcrypt_ffi_kafka.so"), "libfieldcrypt_ffi_kafka.so is loaded");
            }
            else
            {
                Assert.True(plainLoaded, "libfieldcrypt_ffi.so is loaded");
            }
        }

        private static void FileSource()
        {
            string dir = Path.Combine(Path.GetTempPath(), "fieldcrypt-cs-gov-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            try
            {
                string path = Path.Combine(dir, "policy.json");
                File.Copy(Path.Combine(Dir, "policy-r1.signed.json"), path);
                // Per-subject keys (the rules' "subject") need a key store: a file here.
                string config = Config("{\"file\": " + Json.Quote(path) + ", \"policy_id\": \"governance-demo\", \"manual\": true}",
                    "\"key_store\": {\"file\": " + Json.Quote(Path.Combine(dir, "keys.json")) + "}");
                using (Codec codec = Codec.FromConfig(config))
                {
                    PolicyStatus s = codec.GetPolicyStatus();
                    Assert.Equal("governance-demo", s.PolicyId, "policy id");
                    Assert.Equal(1UL, s.Revision, "revision");
                    Assert.Equal("governance-test", s.SignedBy, "signed by");
                    Assert.True(s.Source != null && s.Source.Contains(path), "the source names the file: " + s.Source);
                    Assert.Equal(1UL, s.Loads, "loads");
                    Assert.Equal(0UL, s.Rejections, "rejections");
                    Assert.Equal(0UL, s.FetchErrors, "fetch errors");
                    Assert.True(s.LastErrorKind == null && s.LastErrorMessage == null, "no last error");
                    Assert.Equal("card", InClear(Encrypt(codec, "customers-cs", "c-1"), "c-1"), "revision 1: email encrypted, card in the clear");

                    // Nothing new at the source.
                    Assert.Equal(false, codec.Reload(), "Reload with the same document");
                    Assert.Equal(1UL, codec.GetPolicyStatus().Revision, "still revision 1");

                    // A tampered revision 2: refused, revision 1 stays.
                    File.Copy(Path.Combine(Dir, "policy-r2.tampered.json"), path, true);
                    Assert.Fails<PolicyException>(() => codec.Reload(), "policy", "Reload of a tampered revision");
                    s = codec.GetPolicyStatus();
                    Assert.Equal(1UL, s.Revision, "revision after the tampered document");
                    Assert.Equal(1UL, s.Rejections, "rejections after the tampered document");
                    Assert.Equal("policy", s.LastErrorKind, "last error kind");
                    Assert.True(!string.IsNullOrEmpty(s.LastErrorMessage), "last error message");
                    Assert.Equal("card", InClear(Encrypt(codec, "customers-cs", "c-1"), "c-1"), "revision 1 still in force");

                    // The signed revision 2: loaded, card encrypted too.
                    File.Copy(Path.Combine(Dir, "policy-r2.signed.json"), path, true);
                    Assert.Equal(true, codec.Reload(), "Reload of the signed revision 2");
                    s = codec.GetPolicyStatus();
                    Assert.Equal(2UL, s.Revision, "revision 2");
                    Assert.Equal(2UL, s.Loads, "loads");
                    Assert.Equal(1UL, s.Rejections, "rejections kept");
                    Assert.Equal("governance-test", s.SignedBy, "signed by");
                    Record r = Encrypt(codec, "customers-cs", "c-1");
                    Assert.Equal("", InClear(r, "c-1"), "revision 2: email and card encrypted");
                    Record opened = codec.Decrypt("customers-cs", r.Key, r.Value, r.Headers);
                    Assert.Bytes(CustomerRecord("c-1"), opened.Value, "decrypted under revision 2");

                    // The file gone: a fetch error (retryable), not a rejection; revision 2 stays.
                    File.Delete(path);
                    var e = Assert.Fails<PolicyException>(() => codec.Reload(), "policy", "Reload of a missing file");
                    Assert.True(e.Retryable, "an unreadable source is retryable");
                    s = codec.GetPolicyStatus();
                    Assert.Equal(2UL, s.Revision, "revision 2 stays");
                    Assert.Equal(1UL, s.Rejections, "not a rejection");
                    Assert.Equal(1UL, s.FetchErrors, "fetch errors");
                    Assert.Equal(e.Kind, s.LastErrorKind, "last error kind = the exception's");
                }
            }
            finally
            {
                Directory.Delete(dir, true);
            }
        }

        private static void FixedPolicy()
        {
            string keys = Path.Combine(Path.GetTempPath(), "fieldcrypt-cs-gov-keys-" + Guid.NewGuid().ToString("N") + ".json");
            try
            {
                FixedPolicies(keys);
            }
            finally
            {
                File.Delete(keys);
            }
        }

        private static void FixedPolicies(string keys)
        {
            using (Codec codec = MakeCodec())
            {
                PolicyStatus s = codec.GetPolicyStatus();
                var policy = (Dictionary<string, object>)Json.Parse(Fixtures.Policy);
                Assert.Equal((string)policy["id"], s.PolicyId, "policy id");
                Assert.Equal((ulong)(double)policy["revision"], s.Revision, "revision");
                Assert.True(s.SignedBy == null && s.Source == null, "unsigned, no source");
                Assert.True(s.Loads == 1 && s.Rejections == 0 && s.FetchErrors == 0 && s.LastErrorKind == null, "counters: " + s);
                Assert.Fails<ConfigException>(() => codec.Reload(), "config", "Reload of a fixed policy");
            }
            // A signed envelope given to the constructor: verified with trusted_keys.
            string config = "{\"kms\": {\"local\": {\"secrets\": {\"governance\": \"governance-test-secret\"}}}, \"trusted_keys\": "
                + Fixture("trusted-keys.json") + ", \"key_store\": {\"file\": " + Json.Quote(keys) + "}}";
            using (var codec = new Codec(Fixture("policy-r2.signed.json"), config))
            {
                PolicyStatus s = codec.GetPolicyStatus();
                Assert.True(s.PolicyId == "governance-demo" && s.Revision == 2 && s.SignedBy == "governance-test" && s.Source == null, "signed, given: " + s);
                Assert.Equal("", InClear(Encrypt(codec, "customers-cs", "c-9"), "c-9"), "revision 2 in force");
                Assert.Fails<ConfigException>(() => codec.Reload(), "config", "Reload of a given signed policy");
            }
            Assert.Fails<PolicyException>(() => new Codec(Fixture("policy-r2.tampered.json"), config).Dispose(), "policy", "a tampered envelope given");
            Assert.Fails<PolicyException>(() => new Codec(Fixture("policy-r1.json"), config).Dispose(), "policy", "an unsigned policy with trusted_keys");
        }

        private static void FromConfigErrors()
        {
            Assert.Fails<ConfigException>(() => Codec.FromConfig(Fixtures.Config()).Dispose(), "config", "FromConfig without policy_source");
            Assert.Fails<ConfigException>(() => Codec.FromConfig("{\"kms\": {\"local\": {}}, \"policy_source\": {\"file\": \"p\"}}").Dispose(),
                "config", "a policy_source without trusted_keys nor allow_unsigned");
            string missing = Path.Combine(Path.GetTempPath(), "fieldcrypt-cs-no-such-" + Guid.NewGuid().ToString("N") + ".json");
            var e = Assert.Fails<PolicyException>(() => Codec.FromConfig(Config("{\"file\": " + Json.Quote(missing) + ", \"manual\": true}")).Dispose(),
                "policy", "a file source that does not exist");
            Assert.True(e.Retryable, "an unreadable source is retryable");
            Assert.Throws<ArgumentNullException>(() => Codec.FromConfig(null), "FromConfig(null)");
        }

        private static void NoKafkaInLibrary()
        {
            var e = Assert.Fails<ConfigException>(() => new Codec(Fixtures.Policy,
                Fixtures.Config("\"key_store\": {\"kafka\": {\"bootstrap\": \"127.0.0.1:1\", \"topic\": \"keys\"}}")).Dispose(),
                "config", "a kafka key_store on libfieldcrypt_ffi");
            Assert.True(e.Message.Contains("kafka"), "the message says why: " + e.Message);
            e = Assert.Fails<ConfigException>(() => Codec.FromConfig(Config(
                "{\"kafka\": {\"bootstrap\": \"127.0.0.1:1\", \"topic\": \"policies\"}, \"policy_id\": \"governance-demo\", \"manual\": true}")).Dispose(),
                "config", "a kafka policy_source on libfieldcrypt_ffi");
            Assert.True(e.Message.Contains("kafka"), "the message says why: " + e.Message);
        }

        private static string Broker()
        {
            string kafka = Environment.GetEnvironmentVariable("FIELDCRYPT_KAFKA");
            if (!string.IsNullOrEmpty(kafka)) return kafka;
            if (Environment.GetEnvironmentVariable("FIELDCRYPT_SERVER_TESTS") == "1")
                throw new Exception("FIELDCRYPT_SERVER_TESTS=1 but FIELDCRYPT_KAFKA is not set: scripts/servers.sh start kafka && eval \"$(scripts/servers.sh env)\"");
            throw new SkipException("FIELDCRYPT_KAFKA is not set");
        }

        /// <summary>Publishes a policy document as the security team's tooling would: key = policy id.</summary>
        private static void Publish(Producer producer, string topic, string fixture)
        {
            producer.Produce(topic, new Record(Utf8("governance-demo"), File.ReadAllBytes(Path.Combine(Dir, fixture)), null));
        }

        private static void BrokerScenario()
        {
            string kafka = Broker();
            string run = Guid.NewGuid().ToString("N");
            string policyTopic = "_fieldcrypt_policy-cs-" + run, keyTopic = "_fieldcrypt_keys-cs-" + run, topic = "customers-cs-" + run;
            Func<string, string> config = profile => Config(
                "{\"kafka\": {\"bootstrap\": " + Json.Quote(kafka) + ", \"topic\": " + Json.Quote(policyTopic) + ", \"timeout\": 20}, "
                + "\"policy_id\": \"governance-demo\", \"manual\": true}",
                "\"key_store\": {\"kafka\": {\"bootstrap\": " + Json.Quote(kafka) + ", \"topic\": " + Json.Quote(keyTopic) + ", \"timeout\": 20}}"
                + (profile == null ? "" : ", \"profile\": " + Json.Quote(profile)));

            using (var publisher = new Producer("{\"bootstrap.servers\": " + Json.Quote(kafka) + "}"))
            {
                // 1. Revision 1, signed: email encrypted, card not.
                Publish(publisher, policyTopic, "policy-r1.signed.json");
                using (Codec producer = Codec.FromConfig(config(null)))
                {
                    PolicyStatus s = producer.GetPolicyStatus();
                    Assert.True(s.PolicyId == "governance-demo" && s.Revision == 1 && s.SignedBy == "governance-test", "revision 1: " + s);
                    Assert.True(s.Source != null && s.Source.Contains(policyTopic), "the source names the topic: " + s.Source);
                    Assert.Equal("card", InClear(Encrypt(producer, topic, "c-1"), "c-1"), "revision 1: email encrypted, card in the clear");

                    // 2. A tampered revision 2 is refused; revision 1 stays in force.
                    Publish(publisher, policyTopic, "policy-r2.tampered.json");
                    Assert.Fails<PolicyException>(() => producer.Reload(), "policy", "Reload of a tampered revision");
                    s = producer.GetPolicyStatus();
                    Assert.True(s.Revision == 1 && s.Rejections == 1 && s.LastErrorKind == "policy", "after the tampered document: " + s);
                    Assert.Equal("card", InClear(Encrypt(producer, topic, "c-1"), "c-1"), "revision 1 still in force");

                    // 3. The signed revision 2 loads without a restart: card is encrypted too.
                    Publish(publisher, policyTopic, "policy-r2.signed.json");
                    Assert.Equal(true, producer.Reload(), "Reload of the signed revision 2");
                    Assert.Equal(2UL, producer.GetPolicyStatus().Revision, "revision 2");
                    Assert.Equal("", InClear(Encrypt(producer, topic, "c-1"), "c-1"), "revision 2: email and card encrypted");

                    // 4. Shredding c-2 through the producer's codec.
                    string[] ids = { "c-1", "c-2", "c-3" };
                    Record[] records = ids.Select(id => Encrypt(producer, topic, id)).ToArray();
                    using (Codec running = Codec.FromConfig(config("strict")))
                    {
                        for (int i = 0; i < ids.Length; i++)
                            Assert.Bytes(CustomerRecord(ids[i]), running.Decrypt(topic, null, records[i].Value, records[i].Headers).Value, "before the shred: " + ids[i]);
                        Assert.True(producer.Shred("c-2") >= 1, "Shred(c-2) deleted keys");
                        using (Codec fresh = Codec.FromConfig(config("strict")))
                        {
                            foreach (var consumer in new[] { new { name = "fresh", codec = fresh }, new { name = "running", codec = running } })
                            {
                                var deadline = Stopwatch.StartNew();
                                for (int i = 0; i < ids.Length; i++)
                                {
                                    Record r = records[i];
                                    if (ids[i] != "c-2")
                                    {
                                        Record opened = consumer.codec.Decrypt(topic, null, r.Value, r.Headers);
                                        Assert.True(Contains(opened.Value, ids[i] + "@example.com"), consumer.name + " decrypts " + ids[i]);
                                        continue;
                                    }
                                    while (true)
                                    {
                                        try
                                        {
                                            consumer.codec.Decrypt(topic, null, r.Value, r.Headers);
                                        }
                                        catch (ShreddedException e)
                                        {
                                            Assert.Equal("shredded", e.Kind, "kind");
                                            break;
                                        }
                                        Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), consumer.name + ": c-2 still reads 10 s after the shred");
                                        Thread.Sleep(50);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
