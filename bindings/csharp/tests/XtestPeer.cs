// The C# peer of the cross-language matrix (xtests/README.md, "The matrix"):
//
//   peer-csharp produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX
//   peer-csharp consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json
//
// The codec is the binding's; the Kafka client is librdkafka through libfieldcrypt_ffi_kafka
// (tests/KafkaAid.cs), because no .NET Kafka client can be installed here. Its consumer's packed
// record does not say which topic a message came from, so `consume` reads the topics one after
// the other, each with its own consumer (subscribed to that topic alone, in group GROUP).
// Built into its own exe by `run-tests.sh xtest-peer OUTDIR` (and compiled into the test runner,
// whose "xtest peer" test runs it in-process against FIELDCRYPT_KAFKA).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using Fieldcrypt.Kafka;
using Fieldcrypt.Tests;

namespace Fieldcrypt.Xtest
{
    /// <summary>A failure the peer reports as its message (exit 1).</summary>
    internal sealed class PeerException : Exception
    {
        public PeerException(string message) : base(message) { }
    }

    internal static class XtestPeer
    {
        /// <summary>The formats, in the order they are produced and consumed.</summary>
        internal static readonly string[] Formats = { "json", "avro", "protobuf", "json_schema" };

        /// <summary>How long `consume` reads, for all topics together (a test shortens it).</summary>
        internal static TimeSpan ConsumeTimeout = TimeSpan.FromSeconds(60);

        private const string Usage =
            "usage: peer-csharp produce --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX\n"
            + "       peer-csharp consume --bootstrap HOST:PORT --spec SPEC.json --topic-prefix PREFIX --group GROUP --out OUT.json";

        private static int Main(string[] args)
        {
            return Run(args);
        }

        /// <summary>The peer: 0 on success, 1 with a message on stderr on any failure.</summary>
        internal static int Run(string[] args)
        {
            try
            {
                if (args.Length == 0) throw new PeerException(Usage);
                string command = args[0];
                Dictionary<string, string> options;
                if (command == "produce")
                {
                    options = Options(args, "--bootstrap", "--spec", "--topic-prefix");
                    Produce(options["--bootstrap"], Spec.Load(options["--spec"]), options["--topic-prefix"]);
                }
                else if (command == "consume")
                {
                    options = Options(args, "--bootstrap", "--spec", "--topic-prefix", "--group", "--out");
                    Consume(options["--bootstrap"], Spec.Load(options["--spec"]), options["--topic-prefix"], options["--group"], options["--out"]);
                }
                else
                {
                    throw new PeerException("unknown command " + Json.Quote(command) + "\n" + Usage);
                }
                return 0;
            }
            catch (PeerException e)
            {
                Console.Error.WriteLine("peer-csharp: " + e.Message);
            }
            catch (FieldcryptException e)
            {
                Console.Error.WriteLine("peer-csharp: " + e.GetType().Name + " (" + e.Kind + "): " + e.Message);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("peer-csharp: " + e);
            }
            return 1;
        }

        /// <summary>--name value pairs after the command: exactly the given names, each once.</summary>
        private static Dictionary<string, string> Options(string[] args, params string[] names)
        {
            var options = new Dictionary<string, string>();
            for (int i = 1; i < args.Length; i += 2)
            {
                if (!names.Contains(args[i])) throw new PeerException("unknown argument " + Json.Quote(args[i]) + " for " + args[0]);
                if (i + 1 >= args.Length) throw new PeerException(args[i] + " needs a value");
                if (options.ContainsKey(args[i])) throw new PeerException(args[i] + " given twice");
                options[args[i]] = args[i + 1];
            }
            foreach (string name in names)
                if (!options.ContainsKey(name)) throw new PeerException(args[0] + " needs " + name);
            return options;
        }

        internal static string Topic(string prefix, string format)
        {
            return prefix + "-" + format;
        }

        private static void Produce(string bootstrap, Spec spec, string prefix)
        {
            using (var codec = new Codec(spec.Policy, spec.ProducerConfig))
            using (var producer = new Producer("{\"bootstrap.servers\": " + Json.Quote(bootstrap) + "}"))
            {
                foreach (var format in spec.Formats)
                {
                    string topic = Topic(prefix, format.Key);
                    for (int i = 0; i < format.Value.Count; i++)
                    {
                        Record r = format.Value[i];
                        Record sealedRecord;
                        try
                        {
                            sealedRecord = codec.Encrypt(topic, r.Key, r.Value, r.Headers);
                        }
                        catch (FieldcryptException e)
                        {
                            throw new PeerException("encrypt " + topic + " record " + i + ": " + e.GetType().Name + " (" + e.Kind + "): " + e.Message);
                        }
                        try
                        {
                            // Waits for the broker's acknowledgement: nothing is left to flush after.
                            producer.Produce(topic, sealedRecord);
                        }
                        catch (FieldcryptException e)
                        {
                            throw new PeerException("produce " + topic + " record " + i + ": " + e.Message);
                        }
                    }
                    Console.Error.WriteLine("peer-csharp: produced " + format.Value.Count + " records to " + topic);
                }
            }
        }

        private static void Consume(string bootstrap, Spec spec, string prefix, string group, string outPath)
        {
            var clock = Stopwatch.StartNew();
            var received = new List<KeyValuePair<string, List<Record>>>();
            // One consumer per topic, one topic after the other: the aid's records do not name
            // their topic. The 60 s are for all of them.
            foreach (var format in spec.Formats)
            {
                string topic = Topic(prefix, format.Key);
                int want = format.Value.Count;
                var got = new List<Record>();
                received.Add(new KeyValuePair<string, List<Record>>(format.Key, got));
                if (want == 0) continue;
                string lastError = null;
                string config = "{\"bootstrap.servers\": " + Json.Quote(bootstrap) + ", \"group.id\": " + Json.Quote(group)
                    + ", \"auto.offset.reset\": \"earliest\"}";
                using (var consumer = new Consumer(config, topic))
                {
                    while (got.Count < want)
                    {
                        TimeSpan left = ConsumeTimeout - clock.Elapsed;
                        if (left <= TimeSpan.Zero)
                            throw new PeerException("timed out after " + (int)ConsumeTimeout.TotalSeconds + " s: " + topic + " gave " + got.Count
                                + " of " + want + " records" + (lastError == null ? "" : " (last client error: " + lastError + ")"));
                        Record r;
                        try
                        {
                            r = consumer.Poll((int)Math.Min(1000, Math.Max(1, left.TotalMilliseconds)));
                        }
                        catch (KafkaClientException e)
                        {
                            // Transient ones (a topic not there yet...) pass; the deadline ends the rest.
                            lastError = e.Message;
                            Thread.Sleep(100);
                            continue;
                        }
                        if (r != null) got.Add(r);
                    }
                }
                Console.Error.WriteLine("peer-csharp: consumed " + got.Count + " records from " + topic + " (" + clock.ElapsedMilliseconds + " ms)");
            }

            var formats = new Dictionary<string, object>();
            using (var codec = new Codec(spec.Policy, spec.ConsumerConfig))
            {
                foreach (var format in received)
                {
                    string topic = Topic(prefix, format.Key);
                    var records = new List<object>();
                    for (int i = 0; i < format.Value.Count; i++)
                    {
                        Record raw = format.Value[i];
                        Record opened;
                        try
                        {
                            opened = codec.Decrypt(topic, raw.Key, raw.Value, raw.Headers);
                        }
                        catch (FieldcryptException e)
                        {
                            throw new PeerException("decrypt " + topic + " record " + i + ": " + e.GetType().Name + " (" + e.Kind + "): " + e.Message);
                        }
                        records.Add(new Dictionary<string, object> { { "raw", Json.FromRecord(raw) }, { "decrypted", Json.FromRecord(opened) } });
                    }
                    formats[format.Key] = records;
                }
            }
            string dir = Path.GetDirectoryName(Path.GetFullPath(outPath));
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            File.WriteAllText(outPath, Json.Write(new Dictionary<string, object> { { "formats", formats } }) + "\n", new UTF8Encoding(false));
        }

        /// <summary>SPEC.json: policy, producer_config, consumer_config (as JSON text) and the
        /// plaintext records of each format present, in the order of Formats.</summary>
        internal sealed class Spec
        {
            public string Policy;
            public string ProducerConfig;
            public string ConsumerConfig;
            public List<KeyValuePair<string, List<Record>>> Formats = new List<KeyValuePair<string, List<Record>>>();

            public static Spec Load(string path)
            {
                string text;
                try
                {
                    text = File.ReadAllText(path, Encoding.UTF8);
                }
                catch (Exception e)
                {
                    throw new PeerException("cannot read the spec " + path + ": " + e.Message);
                }
                try
                {
                    return Parse(text);
                }
                catch (PeerException e)
                {
                    throw new PeerException("spec " + path + ": " + e.Message);
                }
                catch (System.FormatException e)
                {
                    throw new PeerException("spec " + path + ": " + e.Message);
                }
            }

            public static Spec Parse(string text)
            {
                var doc = Json.ParseExact(text) as Dictionary<string, object>;
                if (doc == null) throw new PeerException("not a JSON object");
                var spec = new Spec
                {
                    Policy = Json.Write(Member(doc, "policy")),
                    ProducerConfig = Json.Write(Member(doc, "producer_config")),
                    ConsumerConfig = Json.Write(Member(doc, "consumer_config")),
                };
                var formats = Member(doc, "formats") as Dictionary<string, object>;
                if (formats == null) throw new PeerException("\"formats\" is not an object");
                foreach (string name in formats.Keys)
                    if (!XtestPeer.Formats.Contains(name)) throw new PeerException("unknown format " + Json.Quote(name) + " (known: " + string.Join(", ", XtestPeer.Formats) + ")");
                foreach (string name in XtestPeer.Formats)
                {
                    object v;
                    if (!formats.TryGetValue(name, out v)) continue;
                    var list = v as List<object>;
                    if (list == null) throw new PeerException("formats." + name + " is not an array");
                    var records = new List<Record>();
                    for (int i = 0; i < list.Count; i++) records.Add(Json.ToRecord(list[i], "formats." + name + "[" + i + "]"));
                    spec.Formats.Add(new KeyValuePair<string, List<Record>>(name, records));
                }
                return spec;
            }

            private static object Member(Dictionary<string, object> doc, string name)
            {
                object v;
                if (!doc.TryGetValue(name, out v) || !(v is Dictionary<string, object>)) throw new PeerException("\"" + name + "\" is not an object");
                return v;
            }
        }
    }
}
