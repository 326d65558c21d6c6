// What the tests share: the repository's fixtures (schemas/), codecs on the demo policy, the
// Rust CLI for the cross-language checks, and a stub KMS (Vault Transit) on 127.0.0.1.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Fieldcrypt.Tests
{
    internal static class Fixtures
    {
        public static readonly string Root = FindRoot();
        public static readonly string Schemas = Path.Combine(Root, "schemas");
        public static readonly string PolicyPath = Path.Combine(Schemas, "policies", "demo.json");
        public static readonly string KeysPath = Path.Combine(Schemas, "keys", "local-dev.json");
        public static readonly string Payment = Path.Combine(Schemas, "payment");
        public static readonly string Policy = File.ReadAllText(PolicyPath);

        // The payment record's PII (the demo policy's rule `payment-pii`).
        public static readonly string[] Pii = { "jane.doe@example.com", "123-45-6789", "1600 Amphitheatre Parkway", "+1-650-555-0100" };

        private static string FindRoot()
        {
            string env = Environment.GetEnvironmentVariable("FIELDCRYPT_ROOT");
            if (!string.IsNullOrEmpty(env)) return env;
            foreach (string start in new[] { Environment.CurrentDirectory, AppDomain.CurrentDomain.BaseDirectory })
            {
                for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
                    if (File.Exists(Path.Combine(d.FullName, "schemas", "policies", "demo.json"))) return d.FullName;
            }
            throw new Exception("repository root not found: set FIELDCRYPT_ROOT");
        }

        /// <summary>Config JSON with the development key file, plus extra members ("profile": ...).</summary>
        public static string Config(string extra = null)
        {
            return "{\"kms\": {\"local\": {\"key_file\": " + Json.Quote(KeysPath) + "}}"
                + (extra == null ? "" : ", " + extra) + "}";
        }

        public static Codec MakeCodec(string extra = null)
        {
            return new Codec(Policy, Config(extra));
        }

        /// <summary>Writer schema id 1 = payment.avsc (StaticSchemas instead of a registry).</summary>
        public static string AvroSchemasConfig()
        {
            string avsc = File.ReadAllText(Path.Combine(Payment, "payment.avsc"));
            return "\"schemas\": {\"1\": {\"type\": \"AVRO\", \"schema\": " + Json.Quote(avsc) + ", \"name\": \"payment.avsc\"}}";
        }

        /// <summary>Confluent framing: magic 0, schema id big-endian, payload.</summary>
        public static byte[] Framed(int schemaId, byte[] payload)
        {
            var b = new byte[5 + payload.Length];
            b[1] = (byte)(schemaId >> 24);
            b[2] = (byte)(schemaId >> 16);
            b[3] = (byte)(schemaId >> 8);
            b[4] = (byte)schemaId;
            Buffer.BlockCopy(payload, 0, b, 5, payload.Length);
            return b;
        }

        public static byte[] AvroPayment()
        {
            return Framed(1, File.ReadAllBytes(Path.Combine(Payment, "payment.avro.bin")));
        }

        public static byte[] JsonPayment()
        {
            return File.ReadAllBytes(Path.Combine(Payment, "payment.json"));
        }

        /// <summary>A compact customer record (fieldcrypt drops insignificant whitespace in the
        /// objects it rewrites, so compact input round-trips byte for byte).</summary>
        public static byte[] Customer(string name = "Ada", string password = "hunter2", string visa = "4111-1111-1111-1111")
        {
            return Utf8("{\"name\":" + Json.Quote(name) + ",\"password\":" + Json.Quote(password)
                + ",\"visa\":" + Json.Quote(visa) + ",\"city\":\"London\"}");
        }

        public static byte[] Utf8(string s)
        {
            return Encoding.UTF8.GetBytes(s);
        }

        public static bool Contains(byte[] haystack, string needle)
        {
            return Encoding.UTF8.GetString(haystack).Contains(needle);
        }

        public static List<RecordHeader> Headers(params object[] nameValues)
        {
            var list = new List<RecordHeader>();
            for (int i = 0; i < nameValues.Length; i += 2)
            {
                object v = nameValues[i + 1];
                list.Add(new RecordHeader((string)nameValues[i], v is string ? Utf8((string)v) : (byte[])v));
            }
            return list;
        }

        public static string Field(byte[] json, string name)
        {
            return (string)((Dictionary<string, object>)Json.Parse(json))[name];
        }
    }

    /// <summary>The Rust CLI (FIELDCRYPT_BIN): JSON lines through `fieldcrypt encrypt|decrypt`.</summary>
    internal static class Cli
    {
        public static List<Record> Run(string command, string topic, IList<Record> records, params string[] extra)
        {
            string bin = Environment.GetEnvironmentVariable("FIELDCRYPT_BIN");
            if (string.IsNullOrEmpty(bin)) throw new Exception("FIELDCRYPT_BIN is not set (run-tests.sh builds the CLI and sets it)");
            var input = new StringBuilder();
            foreach (Record r in records)
            {
                input.Append("{\"key\": ").Append(B64(r.Key)).Append(", \"value\": ").Append(B64(r.Value)).Append(", \"headers\": [");
                for (int i = 0; i < r.Headers.Count; i++)
                    input.Append(i == 0 ? "" : ", ").Append("[").Append(Json.Quote(r.Headers[i].Name)).Append(", ").Append(B64(r.Headers[i].Value)).Append("]");
                input.Append("]}\n");
            }
            var args = new List<string> { command, "--policy", Fixtures.PolicyPath, "--local-keys", Fixtures.KeysPath, "--topic", topic };
            args.AddRange(extra);
            var psi = new ProcessStartInfo(bin, string.Join(" ", args.Select(Arg)))
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using (var p = Process.Start(psi))
            {
                var stdout = p.StandardOutput.ReadToEndAsync();
                var stderr = p.StandardError.ReadToEndAsync();
                p.StandardInput.Write(input.ToString());
                p.StandardInput.Close();
                if (!p.WaitForExit(120000)) throw new Exception("fieldcrypt " + command + " timed out");
                if (p.ExitCode != 0) throw new Exception("fieldcrypt " + command + " exited " + p.ExitCode + ": " + stderr.Result);
                var output = new List<Record>();
                foreach (string line in stdout.Result.Split('\n'))
                {
                    if (line.Trim().Length == 0) continue;
                    var o = (Dictionary<string, object>)Json.Parse(line);
                    var headers = new List<RecordHeader>();
                    foreach (List<object> h in (List<object>)o["headers"]) headers.Add(new RecordHeader((string)h[0], UnB64(h[1])));
                    output.Add(new Record(UnB64(o["key"]), UnB64(o["value"]), headers));
                }
                Assert.Equal(records.Count, output.Count, "records out of the CLI");
                return output;
            }
        }

        private static string B64(byte[] b)
        {
            return b == null ? "null" : "\"" + Convert.ToBase64String(b) + "\"";
        }

        private static byte[] UnB64(object s)
        {
            return s == null ? null : Convert.FromBase64String((string)s);
        }

        private static string Arg(string a)
        {
            // Process on Mono and .NET splits Arguments like a Windows command line.
            return a.IndexOfAny(new[] { ' ', '"', '\t' }) < 0 ? a : "\"" + a.Replace("\"", "\\\"") + "\"";
        }
    }

    /// <summary>A stub Vault Transit on 127.0.0.1 that answers every request with one status
    /// and error (the KMS error kinds need a real HTTP answer to map).</summary>
    internal sealed class StubVault : IDisposable
    {
        private readonly TcpListener listener;
        private readonly Thread thread;
        public volatile int Status = 503;
        public volatile string Error = "Vault is sealed";
        public int Requests;

        public StubVault()
        {
            listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            thread = new Thread(Serve) { IsBackground = true };
            thread.Start();
        }

        public string Kek
        {
            get { return "vault://127.0.0.1:" + ((IPEndPoint)listener.LocalEndpoint).Port + "/transit/keys/pii"; }
        }

        public Codec MakeCodec()
        {
            string policy = Fixtures.Policy.Replace("local://demo-kek", Kek);
            return new Codec(policy, "{\"kms\": {\"vault\": {\"token\": \"s.stub-token\", \"plain_http\": true, \"max_retries\": 0, \"timeout\": 5}}}");
        }

        private void Serve()
        {
            while (true)
            {
                TcpClient client;
                try { client = listener.AcceptTcpClient(); }
                catch (Exception) { return; }
                try
                {
                    using (client)
                    using (NetworkStream s = client.GetStream())
                    {
                        ReadRequest(s);
                        Interlocked.Increment(ref Requests);
                        byte[] body = Encoding.UTF8.GetBytes("{\"errors\": [" + Json.Quote(Error) + "]}");
                        byte[] head = Encoding.ASCII.GetBytes("HTTP/1.1 " + Status + " Stub\r\nContent-Type: application/json\r\nContent-Length: "
                            + body.Length + "\r\nConnection: close\r\n\r\n");
                        s.Write(head, 0, head.Length);
                        s.Write(body, 0, body.Length);
                    }
                }
                catch (Exception) { }
            }
        }

        private static void ReadRequest(NetworkStream s)
        {
            var buf = new List<byte>();
            int end = -1;
            while (end < 0)
            {
                int b = s.ReadByte();
                if (b < 0) return;
                buf.Add((byte)b);
                int n = buf.Count;
                if (n >= 4 && buf[n - 4] == '\r' && buf[n - 3] == '\n' && buf[n - 2] == '\r' && buf[n - 1] == '\n') end = n;
            }
            string head = Encoding.ASCII.GetString(buf.ToArray());
            int length = 0;
            foreach (string line in head.Split('\n'))
                if (line.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase)) length = int.Parse(line.Substring(15).Trim());
            for (int i = 0; i < length && s.ReadByte() >= 0; i++) { }
        }

        public void Dispose()
        {
            listener.Stop();
        }
    }
}
