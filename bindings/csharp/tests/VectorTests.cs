// The cross-language test vectors (xtests/README.md, "Test vectors"): every xtests/vectors/v*.json
// under the repository root. One test per case, named "vectors: CASE_ID":
//   - a positive case decrypts `encrypted` with a codec of configs[decrypt_config] and must give
//     `decrypted` exactly (key, value, headers in order); it also encrypts `plaintext` with a codec
//     of configs[encrypt_config] (for deterministic cases the key and value must equal the
//     vector's `encrypted` ones) and keeps the result for the Rust checker;
//   - a negative case must fail decryption with a FieldcryptException of Kind `error`.
// The last test writes $FIELDCRYPT_XTEST_OUT/encrypted-csharp.json (when that is set), checked by
// `cargo run -p fieldcrypt-xtests --bin check-encrypted`. No vector file at all is a failure.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;

namespace Fieldcrypt.Tests
{
    internal static class VectorTests
    {
        public const string Language = "csharp";
        private const string OutVariable = "FIELDCRYPT_XTEST_OUT";

        // What the positive cases encrypted, in the order they ran: the results file.
        private static readonly List<object> Results = new List<object>();
        private static int positives;

        private sealed class VectorFile
        {
            public string Name;
            public Dictionary<string, object> Policies;
            public Dictionary<string, object> Configs;
        }

        public static void Register(List<KeyValuePair<string, Action>> t)
        {
            List<string> files;
            string dir = null;
            try
            {
                dir = Path.Combine(Fixtures.Root, "xtests", "vectors");
                files = VectorFiles(dir);
            }
            catch (Exception e)
            {
                string message = "cannot list the vector files in " + (dir ?? "xtests/vectors") + ": " + e.Message;
                t.Add(Test("vectors: files", () => { throw new Exception(message); }));
                return;
            }
            if (files.Count == 0)
            {
                t.Add(Test("vectors: files", () => { throw new Exception("no vector file (xtests/vectors/v*.json) in " + dir); }));
                return;
            }
            foreach (string path in files)
            {
                string name = Path.GetFileName(path);
                // Several files may hold the same case id: the file names the test then.
                string suffix = files.Count > 1 ? " [" + name + "]" : "";
                List<Dictionary<string, object>> cases, negative;
                VectorFile vf;
                try
                {
                    vf = Load(path, out cases, out negative);
                }
                catch (Exception e)
                {
                    string message = "cannot read " + path + ": " + e.Message;
                    t.Add(Test("vectors: " + name, () => { throw new Exception(message); }));
                    continue;
                }
                if (cases.Count == 0) t.Add(Test("vectors: " + name, () => { throw new Exception(name + " has no positive case"); }));
                for (int i = 0; i < cases.Count; i++)
                {
                    Dictionary<string, object> c = cases[i];
                    positives++;
                    t.Add(Test("vectors: " + Id(c, "cases", i) + suffix, () => Positive(vf, c)));
                }
                for (int i = 0; i < negative.Count; i++)
                {
                    Dictionary<string, object> c = negative[i];
                    t.Add(Test("vectors: " + Id(c, "negative", i) + suffix, () => Negative(vf, c)));
                }
            }
            t.Add(Test("vectors: encrypt results ($" + OutVariable + "/encrypted-" + Language + ".json)", WriteResults));
        }

        /// <summary>xtests/vectors/v*.json, v2 after v1 and v10 after v9.</summary>
        private static List<string> VectorFiles(string dir)
        {
            if (!Directory.Exists(dir)) return new List<string>();
            return Directory.GetFiles(dir, "v*.json")
                .Where(f => Path.GetFileName(f).EndsWith(".json", StringComparison.Ordinal))
                .OrderBy(f => Number(Path.GetFileName(f)))
                .ThenBy(f => f, StringComparer.Ordinal)
                .ToList();
        }

        private static long Number(string name)
        {
            Match m = Regex.Match(name, "^v([0-9]{1,9})\\.json$");
            return m.Success ? long.Parse(m.Groups[1].Value) : long.MaxValue;
        }

        private static VectorFile Load(string path, out List<Dictionary<string, object>> cases, out List<Dictionary<string, object>> negative)
        {
            var doc = Json.ParseExact(File.ReadAllText(path, Encoding.UTF8)) as Dictionary<string, object>;
            if (doc == null) throw new Exception("not a JSON object");
            object format;
            doc.TryGetValue("format", out format);
            if (!"fieldcrypt-test-vectors".Equals(format))
                throw new Exception("\"format\" is " + Json.Write(format) + ", not \"fieldcrypt-test-vectors\"");
            var vf = new VectorFile
            {
                Name = Path.GetFileName(path),
                Policies = Object(doc, "policies"),
                Configs = Object(doc, "configs"),
            };
            cases = Objects(doc, "cases");
            negative = doc.ContainsKey("negative") ? Objects(doc, "negative") : new List<Dictionary<string, object>>();
            return vf;
        }

        private static void Positive(VectorFile vf, Dictionary<string, object> c)
        {
            string id = Member(c, "id", "a case");
            string topic = Member(c, "topic", id);
            string policy = Document(vf.Policies, Member(c, "policy", id), "policies");
            string decryptConfig = Document(vf.Configs, Member(c, "decrypt_config", id), "configs");
            string encryptConfig = Document(vf.Configs, Member(c, "encrypt_config", id), "configs");
            Record plaintext = Json.ToRecord(Get(c, "plaintext"), id + ": plaintext");
            Record encrypted = Json.ToRecord(Get(c, "encrypted"), id + ": encrypted");
            Record decrypted = Json.ToRecord(Get(c, "decrypted"), id + ": decrypted");
            object deterministic;
            c.TryGetValue("deterministic", out deterministic);

            // Both halves run; the test reports what failed in either.
            var failures = new List<string>();
            try
            {
                using (var codec = new Codec(policy, decryptConfig))
                    Assert.Record(decrypted, codec.Decrypt(topic, encrypted.Key, encrypted.Value, encrypted.Headers), "decrypt");
            }
            catch (Exception e)
            {
                failures.Add(Describe(e));
            }
            try
            {
                Record sealedRecord;
                using (var codec = new Codec(policy, encryptConfig))
                    sealedRecord = codec.Encrypt(topic, plaintext.Key, plaintext.Value, plaintext.Headers);
                Results.Add(new Dictionary<string, object>
                {
                    { "vectors", vf.Name },
                    { "id", id },
                    { "record", Json.FromRecord(sealedRecord) },
                });
                if (true.Equals(deterministic))
                {
                    // AES-256-SIV: the same key and value as the vector's (the header's record
                    // nonce is random and not compared).
                    Assert.Bytes(encrypted.Key, sealedRecord.Key, "deterministic encrypt: key");
                    Assert.Bytes(encrypted.Value, sealedRecord.Value, "deterministic encrypt: value");
                }
            }
            catch (Exception e)
            {
                failures.Add("encrypt: " + Describe(e));
            }
            if (failures.Count > 0) throw new Exception(string.Join("; ", failures));
        }

        private static void Negative(VectorFile vf, Dictionary<string, object> c)
        {
            string id = Member(c, "id", "a negative case");
            string topic = Member(c, "topic", id);
            string expected = Member(c, "error", id);
            Record record = Json.ToRecord(Get(c, "record"), id + ": record");
            using (var codec = new Codec(Document(vf.Policies, Member(c, "policy", id), "policies"),
                Document(vf.Configs, Member(c, "decrypt_config", id), "configs")))
            {
                Record opened;
                try
                {
                    opened = codec.Decrypt(topic, record.Key, record.Value, record.Headers);
                }
                catch (FieldcryptException e)
                {
                    if (e.Kind != expected)
                        throw new Exception("expected error kind " + expected + ", got " + e.Kind + " (" + e.GetType().Name + ": " + e.Message + ")");
                    return;
                }
                catch (Exception e)
                {
                    throw new Exception("expected a FieldcryptException of kind " + expected + ", got " + e.GetType().Name + ": " + e.Message, e);
                }
                throw new Exception("expected error kind " + expected + ", decryption succeeded: " + opened);
            }
        }

        private static void WriteResults()
        {
            string dir = Environment.GetEnvironmentVariable(OutVariable);
            if (string.IsNullOrEmpty(dir)) throw new SkipException(OutVariable + " is not set");
            Directory.CreateDirectory(dir);
            string path = Path.Combine(dir, "encrypted-" + Language + ".json");
            var doc = new Dictionary<string, object>
            {
                { "format", "fieldcrypt-test-vector-results" },
                { "version", 1 },
                { "language", Language },
                { "results", Results },
            };
            File.WriteAllText(path, Json.Write(doc) + "\n", new UTF8Encoding(false));
            Console.WriteLine("      wrote " + Results.Count + " encrypt results to " + path);
            // A case filtered out, or one whose encryption failed, is missing from the file.
            if (Results.Count != positives)
                throw new Exception(path + " holds " + Results.Count + " of the " + positives + " positive cases");
        }

        private static KeyValuePair<string, Action> Test(string name, Action f)
        {
            return new KeyValuePair<string, Action>(name, f);
        }

        private static string Describe(Exception e)
        {
            var fe = e as FieldcryptException;
            return fe != null ? fe.GetType().Name + " (" + fe.Kind + "): " + fe.Message : e.Message;
        }

        /// <summary>The JSON text of policies[name] or configs[name].</summary>
        private static string Document(Dictionary<string, object> documents, string name, string what)
        {
            object doc;
            if (!documents.TryGetValue(name, out doc)) throw new Exception("no " + what + "[" + Json.Quote(name) + "] in the vector file");
            return Json.Write(doc);
        }

        /// <summary>The case's id, or where it is when it has none (its test then fails).</summary>
        private static string Id(Dictionary<string, object> c, string list, int index)
        {
            object v;
            c.TryGetValue("id", out v);
            return v as string ?? list + "[" + index + "] (no id)";
        }

        private static object Get(Dictionary<string, object> o, string name)
        {
            object v;
            if (!o.TryGetValue(name, out v)) throw new Exception("the case has no \"" + name + "\"");
            return v;
        }

        private static string Member(Dictionary<string, object> o, string name, string what)
        {
            object v;
            o.TryGetValue(name, out v);
            var s = v as string;
            if (s == null) throw new Exception(what + ": \"" + name + "\" is not a string");
            return s;
        }

        private static Dictionary<string, object> Object(Dictionary<string, object> o, string name)
        {
            object v;
            o.TryGetValue(name, out v);
            var d = v as Dictionary<string, object>;
            if (d == null) throw new Exception("\"" + name + "\" is not an object");
            return d;
        }

        private static List<Dictionary<string, object>> Objects(Dictionary<string, object> o, string name)
        {
            object v;
            o.TryGetValue(name, out v);
            var list = v as List<object>;
            if (list == null) throw new Exception("\"" + name + "\" is not an array");
            var result = new List<Dictionary<string, object>>();
            foreach (object item in list)
            {
                var d = item as Dictionary<string, object>;
                if (d == null) throw new Exception("an item of \"" + name + "\" is not an object");
                result.Add(d);
            }
            return result;
        }
    }
}
