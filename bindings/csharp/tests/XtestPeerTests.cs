// The matrix peer (XtestPeer.cs) run in-process: its argument and spec errors, and, when
// FIELDCRYPT_KAFKA is set, produce then consume of a JSON-only spec through the real broker.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Fieldcrypt.Xtest;
using static Fieldcrypt.Tests.Fixtures;

namespace Fieldcrypt.Tests
{
    internal static class XtestPeerTests
    {
        public static void Register(List<KeyValuePair<string, Action>> t)
        {
            t.Add(new KeyValuePair<string, Action>("xtest peer: argument and spec errors", Errors));
            t.Add(new KeyValuePair<string, Action>("xtest peer: produce, consume (broker)", Broker));
        }

        private static string Policy()
        {
            return "{\"fieldcrypt_policy\": 1, \"id\": \"xtest-cs\", \"revision\": 1, \"encrypt\": [{\"name\": \"pii\", "
                + "\"topics\": [\"xt-*\"], \"fields\": [\"password\", \"visa\"], \"key\": \"local://k\"}]}";
        }

        private static string Spec(IEnumerable<Record> json)
        {
            string config = "{\"kms\": {\"local\": {\"secrets\": {\"k\": \"xtest-csharp-peer-secret\"}}}}";
            return "{\"policy\": " + Policy() + ", \"producer_config\": " + config + ", \"consumer_config\": " + config
                + ", \"formats\": {\"json\": [" + string.Join(", ", json.Select(r => Json.Write(Json.FromRecord(r)))) + "]}}";
        }

        /// <summary>Runs the peer, which must exit 1 with a message on stderr holding expected.</summary>
        private static string Fails(string expected, params string[] args)
        {
            TextWriter stderr = Console.Error;
            var captured = new StringWriter();
            int code;
            Console.SetError(captured);
            try
            {
                code = XtestPeer.Run(args);
            }
            finally
            {
                Console.SetError(stderr);
            }
            string what = "peer " + string.Join(" ", args);
            Assert.Equal(1, code, what + ": exit status");
            Assert.True(captured.ToString().StartsWith("peer-csharp: ", StringComparison.Ordinal) && captured.ToString().Contains(expected),
                what + ": message holding <" + expected + ">, got <" + captured + ">");
            return captured.ToString();
        }

        private static void Errors()
        {
            string dir = Path.Combine(Path.GetTempPath(), "fc-cs-peer-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            try
            {
                string spec = Path.Combine(dir, "spec.json");
                File.WriteAllText(spec, Spec(new[] { new Record(null, Customer(), null) }));
                Fails("usage: peer-csharp produce", new string[0]);
                Fails("unknown command \"publish\"", "publish");
                Fails("produce needs --topic-prefix", "produce", "--bootstrap", "127.0.0.1:1", "--spec", spec);
                Fails("consume needs --group", "consume", "--bootstrap", "127.0.0.1:1", "--spec", spec, "--topic-prefix", "p", "--out", "o");
                Fails("unknown argument \"--bogus\"", "produce", "--bootstrap", "h", "--spec", spec, "--topic-prefix", "p", "--bogus", "x");
                Fails("--spec needs a value", "produce", "--bootstrap", "h", "--topic-prefix", "p", "--spec");
                Fails("cannot read the spec", "produce", "--bootstrap", "h", "--spec", Path.Combine(dir, "none.json"), "--topic-prefix", "p");
                File.WriteAllText(spec, "{\"policy\": {}, \"producer_config\": {}, \"consumer_config\": {}, \"formats\": {\"xml\": []}}");
                Fails("unknown format \"xml\"", "produce", "--bootstrap", "h", "--spec", spec, "--topic-prefix", "p");
                File.WriteAllText(spec, "{\"policy\": {\"fieldcrypt_policy\": 1, \"id\": \"x\", \"revision\": 1, \"bogus\": true}, "
                    + "\"producer_config\": {}, \"consumer_config\": {}, \"formats\": {\"json\": []}}");
                Fails("PolicyException (policy)", "produce", "--bootstrap", "h", "--spec", spec, "--topic-prefix", "p");

                // Formats come in the matrix's order whatever the spec's order.
                var parsed = XtestPeer.Spec.Parse("{\"policy\": {}, \"producer_config\": {}, \"consumer_config\": {\"limits\": {\"dek_max_uses\": 12345678901234567}}, "
                    + "\"formats\": {\"json_schema\": [], \"avro\": [{\"key\": null, \"value\": \"AAE=\", \"headers\": [[\"h\", null], [\"i\", \"\"]]}], \"json\": []}}");
                Assert.Equal("json,avro,json_schema", string.Join(",", parsed.Formats.Select(f => f.Key)), "format order");
                Record r = parsed.Formats[1].Value[0];
                Assert.Bytes(null, r.Key, "null key");
                Assert.Bytes(new byte[] { 0, 1 }, r.Value, "value");
                Assert.Bytes(null, r.Headers[0].Value, "absent header value");
                Assert.Bytes(new byte[0], r.Headers[1].Value, "empty header value");
                Assert.Equal("{\"limits\": {\"dek_max_uses\": 12345678901234567}}", parsed.ConsumerConfig, "numbers kept exactly");
            }
            finally
            {
                Directory.Delete(dir, true);
            }
        }

        private static void Broker()
        {
            string kafka = Environment.GetEnvironmentVariable("FIELDCRYPT_KAFKA");
            if (string.IsNullOrEmpty(kafka))
            {
                if (Environment.GetEnvironmentVariable("FIELDCRYPT_SERVER_TESTS") == "1")
                    throw new Exception("FIELDCRYPT_SERVER_TESTS=1 but FIELDCRYPT_KAFKA is not set: scripts/servers.sh start kafka && eval \"$(scripts/servers.sh env)\"");
                throw new SkipException("FIELDCRYPT_KAFKA is not set");
            }
            var plain = Enumerable.Range(0, 4).Select(i => new Record(i == 3 ? null : Utf8("k" + i), Customer("c" + i, "pw-" + i),
                i == 2 ? null : Headers("trace", "t" + i, "empty", new byte[0]))).ToList();
            string dir = Path.Combine(Path.GetTempPath(), "fc-cs-peer-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(dir);
            try
            {
                string spec = Path.Combine(dir, "spec.json");
                string outPath = Path.Combine(dir, "out", "consumed.json");
                File.WriteAllText(spec, Spec(plain));
                string prefix = "xt-cs-" + Guid.NewGuid().ToString("N").Substring(0, 12);
                Assert.Equal(0, XtestPeer.Run(new[] { "produce", "--bootstrap", kafka, "--spec", spec, "--topic-prefix", prefix }), "produce");
                Assert.Equal(0, XtestPeer.Run(new[] { "consume", "--bootstrap", kafka, "--spec", spec, "--topic-prefix", prefix,
                    "--group", prefix + "-group", "--out", outPath }), "consume");
                var formats = (Dictionary<string, object>)((Dictionary<string, object>)Json.Parse(File.ReadAllText(outPath)))["formats"];
                Assert.Equal("json", string.Join(",", formats.Keys), "formats in OUT.json");
                var got = (List<object>)formats["json"];
                Assert.Equal(plain.Count, got.Count, "records in OUT.json");
                for (int i = 0; i < plain.Count; i++)
                {
                    var pair = (Dictionary<string, object>)got[i];
                    Record raw = Json.ToRecord(pair["raw"], "raw " + i);
                    Record opened = Json.ToRecord(pair["decrypted"], "decrypted " + i);
                    Assert.True(raw.GetHeader(Codec.HeaderName) != null && !Contains(raw.Value, "pw-" + i), "record " + i + " encrypted on the broker");
                    Assert.Record(plain[i], opened, "record " + i);
                }
                // A topic with fewer records than the spec lists: exit 1 at the deadline, no OUT.json.
                TimeSpan deadline = XtestPeer.ConsumeTimeout;
                XtestPeer.ConsumeTimeout = TimeSpan.FromSeconds(3);
                try
                {
                    Fails("timed out after 3 s: " + prefix + "-none-json gave 0 of 4 records", "consume", "--bootstrap", kafka, "--spec", spec,
                        "--topic-prefix", prefix + "-none", "--group", prefix + "-group", "--out", outPath + ".2");
                    Assert.True(!File.Exists(outPath + ".2"), "no OUT.json after a failure");
                }
                finally
                {
                    XtestPeer.ConsumeTimeout = deadline;
                }
            }
            finally
            {
                Directory.Delete(dir, true);
            }
        }
    }
}
