// A self-checking test runner (no NUnit/xUnit: NuGet is unreachable here). Prints one line per
// test and "N passed, M failed, K skipped"; exits 1 when a test failed.
//
//   mono FieldcryptTests.exe [SUBSTRING...]   runs the tests whose names contain a SUBSTRING
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace Fieldcrypt.Tests
{
    internal sealed class SkipException : Exception
    {
        public SkipException(string reason) : base(reason) { }
    }

    internal static class Runner
    {
        private static int Main(string[] args)
        {
            var tests = new List<KeyValuePair<string, Action>>();
            CodecTests.Register(tests);
            ErrorTests.Register(tests);
            InteropTests.Register(tests);
            XtestPeerTests.Register(tests);
            GovernanceTests.Register(tests);
            // Last: their final test writes the encrypt results of the cases before it.
            VectorTests.Register(tests);

            int passed = 0, failed = 0, skipped = 0;
            string version;
            try
            {
                version = Codec.Version;
            }
            catch (DllNotFoundException e)
            {
                Console.WriteLine("libfieldcrypt_ffi not found (" + e.Message + "): set LD_LIBRARY_PATH or a dllmap (README.md)");
                return 1;
            }
            Console.WriteLine("fieldcrypt C# binding tests: library " + version + ", "
                + (Type.GetType("Mono.Runtime") != null ? "Mono" : "CLR") + " " + Environment.Version);
            foreach (var t in tests)
            {
                if (args.Length > 0 && !args.Any(a => t.Key.Contains(a))) continue;
                var clock = Stopwatch.StartNew();
                try
                {
                    t.Value();
                    passed++;
                    Console.WriteLine("ok    " + t.Key + " (" + clock.ElapsedMilliseconds + " ms)");
                }
                catch (SkipException e)
                {
                    skipped++;
                    Console.WriteLine("skip  " + t.Key + ": " + e.Message);
                }
                catch (Exception e)
                {
                    failed++;
                    Console.WriteLine("FAIL  " + t.Key + ": " + e);
                }
            }
            Console.WriteLine(passed + " passed, " + failed + " failed, " + skipped + " skipped");
            return failed == 0 ? 0 : 1;
        }
    }

    internal static class Assert
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new Exception("assertion failed: " + what);
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new Exception(what + ": expected <" + expected + ">, got <" + actual + ">");
        }

        public static void Bytes(byte[] expected, byte[] actual, string what)
        {
            if (expected == null || actual == null)
            {
                if (expected != null || actual != null)
                    throw new Exception(what + ": expected " + Show(expected) + ", got " + Show(actual));
                return;
            }
            if (!expected.SequenceEqual(actual))
                throw new Exception(what + ": expected " + Show(expected) + ", got " + Show(actual));
        }

        public static void Headers(IList<RecordHeader> expected, IList<RecordHeader> actual, string what)
        {
            Equal(expected.Count, actual.Count, what + ": header count");
            for (int i = 0; i < expected.Count; i++)
            {
                Equal(expected[i].Name, actual[i].Name, what + ": header " + i + " name");
                Bytes(expected[i].Value, actual[i].Value, what + ": header " + i + " value");
            }
        }

        public static void Record(Record expected, Record actual, string what)
        {
            Bytes(expected.Key, actual.Key, what + ": key");
            Bytes(expected.Value, actual.Value, what + ": value");
            Headers(expected.Headers, actual.Headers, what);
        }

        /// <summary>Runs f, which must throw exactly E; returns the exception.</summary>
        public static E Throws<E>(Action f, string what) where E : Exception
        {
            try
            {
                f();
            }
            catch (Exception e)
            {
                if (e.GetType() == typeof(E)) return (E)e;
                throw new Exception(what + ": expected " + typeof(E).Name + ", got " + e.GetType().Name + ": " + e.Message, e);
            }
            throw new Exception(what + ": expected " + typeof(E).Name + ", nothing was thrown");
        }

        /// <summary>Runs f, which must throw E or a subclass of it; returns the exception.</summary>
        public static E Raises<E>(Action f, string what) where E : Exception
        {
            try
            {
                f();
            }
            catch (E e)
            {
                return e;
            }
            catch (Exception e)
            {
                throw new Exception(what + ": expected " + typeof(E).Name + ", got " + e.GetType().Name + ": " + e.Message, e);
            }
            throw new Exception(what + ": expected " + typeof(E).Name + ", nothing was thrown");
        }

        /// <summary>Like Throws, and checks the FieldcryptException fields.</summary>
        public static E Fails<E>(Action f, string kind, string what) where E : FieldcryptException
        {
            E e = Throws<E>(f, what);
            Equal(kind, e.Kind, what + ": Kind");
            True(!string.IsNullOrEmpty(e.Message), what + ": a message");
            return e;
        }

        private static string Show(byte[] b)
        {
            if (b == null) return "null";
            string s = System.Text.Encoding.UTF8.GetString(b);
            return "<" + b.Length + " bytes: " + (s.Length > 200 ? s.Substring(0, 200) + "..." : s) + ">";
        }
    }
}
