// Per-call cost of the C# binding on the standard workload: the JSON payment record
// (/work/shared/bench or schemas/payment: 11 fields, 4 PII) under the demo policy's `payments`
// topic, local KMS. A Stopwatch loop: per figure a warm-up, then ROUNDS rounds of N calls; the
// median round and the best round are reported in µs per call (the best is the steadier figure
// on a busy machine). One thread.
//
//   mono FieldcryptBench.exe [N [ROUNDS]]          (bindings/csharp/run-tests.sh bench)
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;

namespace Fieldcrypt.Bench
{
    internal static class Program
    {
        // The empty P/Invoke: the interop overhead every codec call pays on top of the core's work.
        [DllImport("fieldcrypt_ffi", CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        private static extern IntPtr fc_version();

        private static int Main(string[] args)
        {
            int n = args.Length > 0 ? int.Parse(args[0]) : 20000;
            int rounds = args.Length > 1 ? int.Parse(args[1]) : 7;
            string root = Environment.GetEnvironmentVariable("FIELDCRYPT_ROOT") ?? Directory.GetCurrentDirectory();
            string workload = File.Exists("/work/shared/bench/payment.json") ? "/work/shared/bench" : Path.Combine(root, "schemas", "payment");
            byte[] payment = File.ReadAllBytes(Path.Combine(workload, "payment.json"));
            string policy = File.ReadAllText(Path.Combine(root, "schemas", "policies", "demo.json"));
            string keys = Path.Combine(root, "schemas", "keys", "local-dev.json");
            string config = "{\"kms\": {\"local\": {\"key_file\": \"" + keys.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"}}}";

            Console.WriteLine("fieldcrypt C# binding benchmark: library " + Codec.Version + ", "
                + (Type.GetType("Mono.Runtime") != null ? "Mono" : "CLR") + " " + Environment.Version
                + ", workload " + Path.Combine(workload, "payment.json") + " (" + payment.Length + " bytes), "
                + rounds + " rounds of " + n + " calls: median (best)");
            using (var codec = new Codec(policy, config))
            {
                Record sealedRec = codec.Encrypt("payments", null, payment, null);
                var batch = Enumerable.Repeat(new Record(null, payment, null), 100).ToList();
                IList<Record> sealedBatch = codec.EncryptBatch("payments", batch);

                Report("empty P/Invoke (fc_version)", Measure(() => fc_version(), n * 10, rounds), 1);
                Report("Codec.Version (P/Invoke + string)", Measure(() => { var v = Codec.Version; }, n * 10, rounds), 1);
                Report("encrypt (payment JSON, 4 fields)", Measure(() => codec.Encrypt("payments", null, payment, null), n, rounds), 1);
                Report("decrypt (payment JSON, 4 fields)",
                    Measure(() => codec.Decrypt("payments", null, sealedRec.Value, sealedRec.Headers), n, rounds), 1);
                // No fieldcrypt header: the core returns the record as it is, so this is about
                // the fixed cost of a codec call through the binding (packing, copy back, frees).
                Report("decrypt, no fieldcrypt header (pass-through)", Measure(() => codec.Decrypt("payments", null, payment, null), n, rounds), 1);
                Report("encrypt_batch of 100, per record", Measure(() => codec.EncryptBatch("payments", batch), n / 100, rounds), 100);
                Report("decrypt_batch of 100, per record", Measure(() => codec.DecryptBatch("payments", sealedBatch), n / 100, rounds), 100);
            }
            return 0;
        }

        private static double[] Measure(Action f, int number, int rounds)
        {
            for (int i = 0; i < Math.Max(number / 10, 10); i++) f();
            var times = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < number; i++) f();
                times.Add(clock.Elapsed.TotalMilliseconds * 1000.0 / number);
            }
            times.Sort();
            return new[] { times[times.Count / 2], times[0] };
        }

        private static void Report(string what, double[] microsPerCall, int records)
        {
            Console.WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture,
                "  {0,-46} {1,9:F3} µs/op  (best {2:F3})", what, microsPerCall[0] / records, microsPerCall[1] / records));
        }
    }
}
