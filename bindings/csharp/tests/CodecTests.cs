// The codec through the binding: round trips (JSON, Avro), absent vs empty keys and values,
// headers, batches, profiles, stats, Dispose, threads.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using static Fieldcrypt.Tests.Fixtures;

namespace Fieldcrypt.Tests
{
    internal static class CodecTests
    {
        public static void Register(List<KeyValuePair<string, Action>> t)
        {
            t.Add(new KeyValuePair<string, Action>("version", VersionString));
            t.Add(new KeyValuePair<string, Action>("json round trip (customers)", JsonRoundTrip));
            t.Add(new KeyValuePair<string, Action>("json round trip (payment workload)", PaymentJsonRoundTrip));
            t.Add(new KeyValuePair<string, Action>("avro round trip (payment workload, static schemas)", AvroRoundTrip));
            t.Add(new KeyValuePair<string, Action>("null and empty key and value", NullAndEmpty));
            t.Add(new KeyValuePair<string, Action>("headers preserved", HeadersPreserved));
            t.Add(new KeyValuePair<string, Action>("inputs are not changed", InputsUnchanged));
            t.Add(new KeyValuePair<string, Action>("profiles", Profiles));
            t.Add(new KeyValuePair<string, Action>("batch round trip", BatchRoundTrip));
            t.Add(new KeyValuePair<string, Action>("stats and ClearKeyCache", StatsCounts));
            t.Add(new KeyValuePair<string, Action>("Shred and RotateSubject (file key store)", ShredAndRotate));
            t.Add(new KeyValuePair<string, Action>("use after Dispose, Dispose twice", Disposed));
            t.Add(new KeyValuePair<string, Action>("codecs left to the finalizer", Finalized));
            t.Add(new KeyValuePair<string, Action>("threads share one codec", Threads));
            t.Add(new KeyValuePair<string, Action>("Dispose while other threads call", DisposeWhileInUse));
            t.Add(new KeyValuePair<string, Action>("large values", LargeValues));
            t.Add(new KeyValuePair<string, Action>("no native memory growth (buffers and errors freed)", NoLeaks));
        }

        private static void VersionString()
        {
            Assert.True(Regex.IsMatch(Codec.Version, @"^\d+\.\d+\.\d+"), "semver-like version: " + Codec.Version);
        }

        private static void JsonRoundTrip()
        {
            using (Codec codec = MakeCodec())
            {
                byte[] plain = Customer();
                var headers = Headers("trace", "t-1");
                Record sealedRec = codec.Encrypt("customers", null, plain, headers);
                Assert.True(!Contains(sealedRec.Value, "hunter2") && !Contains(sealedRec.Value, "4111-1111"), "secrets left in the clear");
                Assert.True(Contains(sealedRec.Value, "London"), "other fields stay");
                Assert.Equal(2, sealedRec.Headers.Count, "one header added");
                Assert.Equal("trace", sealedRec.Headers[0].Name, "given headers first");
                Assert.Equal(Codec.HeaderName, sealedRec.Headers[1].Name, "then the fieldcrypt header");
                Assert.Equal(1, (int)sealedRec.GetHeader(Codec.HeaderName)[0], "format version 1");
                Record opened = codec.Decrypt("customers", sealedRec.Key, sealedRec.Value, sealedRec.Headers);
                Assert.Record(new Record(null, plain, headers), opened, "decrypted");
                // A record without the header is returned as it is.
                Assert.Bytes(plain, codec.Decrypt("customers", null, plain, null).Value, "unencrypted record");
            }
        }

        private static void PaymentJsonRoundTrip()
        {
            using (Codec codec = MakeCodec())
            {
                byte[] plain = JsonPayment();
                Record sealedRec = codec.Encrypt("payments", Utf8("k1"), plain, null);
                foreach (string secret in Pii) Assert.True(!Contains(sealedRec.Value, secret), secret + " left in the clear");
                Assert.True(Contains(sealedRec.Value, "Jane Alexandra Doe"), "untagged fields stay");
                Assert.Equal(4UL, codec.Stats().FieldsEncrypted, "four PII fields");
                Record opened = codec.Decrypt("payments", sealedRec.Key, sealedRec.Value, sealedRec.Headers);
                // The workload file has spaces: compare documents, not bytes.
                Assert.True(Json.DeepEquals(Json.Parse(plain), Json.Parse(opened.Value)), "decrypted document equals the original");
                Assert.Bytes(Utf8("k1"), opened.Key, "key");
                Assert.Equal(0, opened.Headers.Count, "header removed");
            }
        }

        private static void AvroRoundTrip()
        {
            byte[] plain = AvroPayment();
            using (Codec producer = MakeCodec(AvroSchemasConfig()))
            using (Codec consumer = MakeCodec(AvroSchemasConfig()))
            {
                Record sealedRec = producer.Encrypt("payments", null, plain, null);
                Assert.Bytes(plain.Take(5).ToArray(), sealedRec.Value.Take(5).ToArray(), "the Confluent framing passes through");
                foreach (string secret in Pii)
                {
                    Assert.True(Contains(plain, secret), secret + " in the plaintext");
                    Assert.True(!Contains(sealedRec.Value, secret), secret + " left in the clear");
                }
                Assert.Equal(4UL, producer.Stats().FieldsEncrypted, "four PII fields");
                Record opened = consumer.Decrypt("payments", null, sealedRec.Value, sealedRec.Headers);
                Assert.Bytes(plain, opened.Value, "decrypt restores the exact bytes");
                Assert.Equal(0, opened.Headers.Count, "header removed");
            }
        }

        private static void NullAndEmpty()
        {
            using (Codec codec = MakeCodec())
            {
                byte[] plain = Customer();
                Record a = codec.Encrypt("customers", null, plain, null);
                Assert.True(a.Key == null, "null key stays null");
                Record b = codec.Encrypt("customers", new byte[0], plain, null);
                Assert.True(b.Key != null && b.Key.Length == 0, "empty key stays empty");
                Assert.True(codec.Decrypt("customers", null, a.Value, a.Headers).Key == null, "null key after decrypt");
                Record bo = codec.Decrypt("customers", new byte[0], b.Value, b.Headers);
                Assert.True(bo.Key != null && bo.Key.Length == 0, "empty key after decrypt");
                // Tombstones: absent value passes through, no header.
                Record tomb = codec.Encrypt("customers", Utf8("k"), null, null);
                Assert.True(tomb.Value == null, "tombstone stays a tombstone");
                Assert.Equal(0, tomb.Headers.Count, "no header on a tombstone");
                Assert.True(codec.Decrypt("customers", Utf8("k"), null, null).Value == null, "tombstone decrypts to a tombstone");
                // Empty values: on a topic without rules they pass through as empty (not absent).
                Record empty = codec.Encrypt("audit", null, new byte[0], Headers("h", new byte[0]));
                Assert.True(empty.Value != null && empty.Value.Length == 0, "empty value stays empty");
                Assert.True(empty.Headers[0].Value != null && empty.Headers[0].Value.Length == 0, "empty header value stays empty");
                Record other = codec.Encrypt("audit", null, Utf8("not even json"), null);
                Assert.Bytes(Utf8("not even json"), other.Value, "no rule: unchanged");
            }
        }

        private static void HeadersPreserved()
        {
            using (Codec codec = MakeCodec())
            {
                var headers = Headers("trace", "t-1", "absent", null, "empty", new byte[0], "trace", "t-2",
                    "caf\u00e9 \u2603", new byte[] { 0, 255, 1, 254 });
                Record sealedRec = codec.Encrypt("customers", null, Customer(), headers);
                Assert.Headers(headers, sealedRec.Headers.Take(headers.Count).ToList(), "headers before the fieldcrypt one");
                Assert.Equal(headers.Count + 1, sealedRec.Headers.Count, "one more");
                Assert.True(sealedRec.Headers[1].Value == null, "absent header value stays absent");
                Record opened = codec.Decrypt("customers", null, sealedRec.Value, sealedRec.Headers);
                Assert.Headers(headers, opened.Headers, "after decrypt");
                Assert.Bytes(Utf8("t-2"), opened.GetHeader("trace"), "GetHeader: the last one");
            }
        }

        private static void InputsUnchanged()
        {
            using (Codec codec = MakeCodec())
            {
                byte[] plain = Customer();
                byte[] copy = (byte[])plain.Clone();
                var headers = Headers("trace", "t-1");
                codec.Encrypt("customers", null, plain, headers);
                Assert.Bytes(copy, plain, "value array");
                Assert.Equal(1, headers.Count, "the caller's header list");
            }
        }

        private static void Profiles()
        {
            Record sealedRec;
            using (Codec producer = MakeCodec()) sealedRec = producer.Encrypt("customers", null, Customer(), null);
            using (Codec visaOnly = MakeCodec("\"profile\": \"visa-only\""))
            {
                Record r = visaOnly.Decrypt("customers", null, sealedRec.Value, sealedRec.Headers);
                Assert.Equal("4111-1111-1111-1111", Field(r.Value, "visa"), "visa decrypted");
                Assert.Equal(Field(sealedRec.Value, "password"), Field(r.Value, "password"), "password stays ciphertext");
                Assert.True(r.GetHeader(Codec.HeaderName) != null, "ciphertext left: the header stays");
            }
            using (Codec support = MakeCodec("\"profile\": \"support\""))
            {
                Record r = support.Decrypt("customers", null, sealedRec.Value, sealedRec.Headers);
                Assert.Equal("****", Field(r.Value, "password"), "masked");
                Assert.Equal(1UL, support.Stats().FieldsWithheld, "one field withheld");
            }
        }

        private static void BatchRoundTrip()
        {
            var records = new List<Record>();
            for (int i = 0; i < 20; i++)
                records.Add(new Record(i % 3 == 0 ? null : Utf8("k" + i), i == 7 ? null : Customer("c" + i, "pw-" + i),
                    Headers("trace", "t" + i)));
            using (Codec codec = MakeCodec())
            {
                IList<Record> sealedRecs = codec.EncryptBatch("customers", records);
                Assert.Equal(records.Count, sealedRecs.Count, "batch size");
                for (int i = 0; i < records.Count; i++)
                {
                    if (i == 7) continue;
                    Assert.True(!Contains(sealedRecs[i].Value, "pw-" + i), "record " + i + " encrypted");
                    Assert.True(sealedRecs[i].GetHeader(Codec.HeaderName) != null, "record " + i + " header");
                }
                IList<Record> opened = codec.DecryptBatch("customers", sealedRecs);
                for (int i = 0; i < records.Count; i++) Assert.Record(records[i], opened[i], "record " + i);
                Assert.Equal(0, codec.EncryptBatch("customers", new List<Record>()).Count, "empty batch");
                // Single-record decrypt of batch output agrees.
                Assert.Record(records[1], codec.Decrypt("customers", sealedRecs[1].Key, sealedRecs[1].Value, sealedRecs[1].Headers), "single");
            }
        }

        private static void ShredAndRotate()
        {
            string store = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "fieldcrypt-cs-" + Guid.NewGuid().ToString("N") + ".jsonl");
            string policy = "{\"fieldcrypt_policy\": 1, \"id\": \"cs-shred\", \"encrypt\": [{\"name\": \"r\", \"topics\": [\"t\"], "
                + "\"fields\": [\"email\"], \"key\": \"local://k\", \"subject\": \"customer_id\"}], "
                + "\"profiles\": {\"strict\": {\"decrypt\": [{\"topics\": [\"*\"]}], \"otherwise\": \"error\"}}}";
            string config = "{\"kms\": {\"local\": {\"secrets\": {\"k\": \"cs\"}}}, \"key_store\": {\"file\": \"" + store + "\", \"refresh\": 0}";
            try
            {
                using (var producer = new Codec(policy, config + "}"))
                using (var consumer = new Codec(policy, config + ", \"profile\": \"strict\"}"))
                {
                    var one = producer.Encrypt("t", null, System.Text.Encoding.UTF8.GetBytes("{\"customer_id\":\"c-1\",\"email\":\"a@x\"}"), null);
                    var two = producer.Encrypt("t", null, System.Text.Encoding.UTF8.GetBytes("{\"customer_id\":\"c-2\",\"email\":\"b@x\"}"), null);
                    producer.RotateSubject("c-1");
                    Assert.Equal(2UL, producer.Shred("c-1"), "keys shredded");
                    Assert.Throws<ShreddedException>(() => consumer.Decrypt("t", one.Key, one.Value, one.Headers), "shredded subject");
                    Assert.True(consumer.Decrypt("t", two.Key, two.Value, two.Headers).Value != null, "another subject still decrypts");
                }
            }
            finally
            {
                System.IO.File.Delete(store);
            }
        }

        private static void StatsCounts()
        {
            using (Codec codec = MakeCodec())
            {
                CodecStats s = codec.Stats();
                Assert.Equal(0UL, s.RecordsEncrypted + s.RecordsDecrypted + s.DeksCreated, "fresh codec");
                Record sealedRec = null;
                for (int i = 0; i < 3; i++)
                {
                    sealedRec = codec.Encrypt("customers", null, Customer(), null);
                    codec.Decrypt("customers", null, sealedRec.Value, sealedRec.Headers);
                }
                s = codec.Stats();
                Assert.Equal(3UL, s.RecordsEncrypted, "records_encrypted");
                Assert.Equal(6UL, s.FieldsEncrypted, "fields_encrypted");
                Assert.Equal(3UL, s.RecordsDecrypted, "records_decrypted");
                Assert.Equal(6UL, s.FieldsDecrypted, "fields_decrypted");
                Assert.Equal(1UL, s.DeksCreated, "deks_created");
                Assert.Equal(1UL, s.KmsWrapCalls, "kms_wrap_calls");
                Assert.Equal(1UL, s.KmsUnwrapCalls, "kms_unwrap_calls");
                Assert.Equal(1UL, s.DekCacheMisses, "dek_cache_misses");
                Assert.Equal(2UL, s.DekCacheHits, "dek_cache_hits");
                Assert.Equal(0UL, s.FieldsWithheld + s.KmsErrors + s.KmsDenialsCached + s.KmsDeriveCalls, "no failures");
                codec.ClearKeyCache();
                codec.Decrypt("customers", null, sealedRec.Value, sealedRec.Headers);
                Assert.Equal(2UL, codec.Stats().KmsUnwrapCalls, "the cleared key is unwrapped again");
            }
        }

        private static void Disposed()
        {
            Codec codec = MakeCodec();
            codec.Dispose();
            codec.Dispose();
            byte[] plain = Customer();
            Assert.Throws<ObjectDisposedException>(() => codec.Encrypt("customers", null, plain, null), "Encrypt");
            Assert.Throws<ObjectDisposedException>(() => codec.Decrypt("customers", null, plain, null), "Decrypt");
            Assert.Throws<ObjectDisposedException>(() => codec.EncryptBatch("customers", new List<Record>()), "EncryptBatch");
            Assert.Throws<ObjectDisposedException>(() => codec.DecryptBatch("customers", new List<Record>()), "DecryptBatch");
            Assert.Throws<ObjectDisposedException>(() => codec.Stats(), "Stats");
            Assert.Throws<ObjectDisposedException>(() => codec.ClearKeyCache(), "ClearKeyCache");
            Assert.Throws<ArgumentNullException>(() => MakeCodec().Encrypt(null, null, plain, null), "null topic");
            Assert.Throws<ArgumentNullException>(() => new Codec(null, null), "null policy");
        }

        private static void Finalized()
        {
            for (int i = 0; i < 50; i++) MakeCodec().Encrypt("customers", null, Customer(), null);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            using (Codec codec = MakeCodec()) codec.Encrypt("customers", null, Customer(), null);
        }

        private static void Threads()
        {
            const int threads = 8, perThread = 200;
            var errors = new List<Exception>();
            using (Codec codec = MakeCodec())
            {
                var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
                {
                    try
                    {
                        for (int i = 0; i < perThread; i++)
                        {
                            byte[] plain = Customer("t" + t + "-" + i, "pw-" + t + "-" + i);
                            Record sealedRec = codec.Encrypt("customers", Utf8("k" + i), plain, Headers("t", "" + t));
                            if (Contains(sealedRec.Value, "pw-")) throw new Exception("not encrypted");
                            // Batches from several threads too.
                            if (i % 20 == 0)
                            {
                                var batch = codec.DecryptBatch("customers", codec.EncryptBatch("customers", new[] { new Record(null, plain, null) }));
                                Assert.Bytes(plain, batch[0].Value, "batch");
                            }
                            Record opened = codec.Decrypt("customers", sealedRec.Key, sealedRec.Value, sealedRec.Headers);
                            Assert.Bytes(plain, opened.Value, "thread " + t + " record " + i);
                            Assert.Bytes(Utf8("" + t), opened.GetHeader("t"), "header");
                        }
                    }
                    catch (Exception e)
                    {
                        lock (errors) errors.Add(e);
                    }
                })).ToList();
                workers.ForEach(w => w.Start());
                workers.ForEach(w => w.Join());
                if (errors.Count > 0) throw new Exception(errors.Count + " thread failures, first: " + errors[0]);
                CodecStats s = codec.Stats();
                Assert.Equal((ulong)(threads * perThread + threads * perThread / 20), s.RecordsEncrypted, "records_encrypted");
                Assert.Equal(s.RecordsEncrypted, s.RecordsDecrypted, "records_decrypted");
            }
        }

        private static void DisposeWhileInUse()
        {
            Codec codec = MakeCodec();
            var unexpected = new List<Exception>();
            int disposedSeen = 0;
            var workers = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                try
                {
                    while (true) codec.Encrypt("customers", null, Customer(), null);
                }
                catch (ObjectDisposedException)
                {
                    Interlocked.Increment(ref disposedSeen);
                }
                catch (Exception e)
                {
                    lock (unexpected) unexpected.Add(e);
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            Thread.Sleep(100);
            codec.Dispose();
            workers.ForEach(w => w.Join());
            if (unexpected.Count > 0) throw new Exception("unexpected: " + unexpected[0]);
            Assert.Equal(4, disposedSeen, "every thread saw ObjectDisposedException");
        }

        private static void LargeValues()
        {
            using (Codec codec = MakeCodec())
            {
                string notes = new string('x', 4 << 20);
                byte[] plain = Utf8("{\"password\":\"hunter2\",\"notes\":\"" + notes + "\"}");
                var headers = Headers("big", new byte[1 << 20]);
                Record sealedRec = codec.Encrypt("customers", new byte[1 << 16], plain, headers);
                Assert.True(!Contains(sealedRec.Value, "hunter2"), "encrypted");
                Record opened = codec.Decrypt("customers", sealedRec.Key, sealedRec.Value, sealedRec.Headers);
                Assert.Record(new Record(new byte[1 << 16], plain, headers), opened, "4 MiB value, 1 MiB header, 64 KiB key");
            }
        }

        private static void NoLeaks()
        {
            // A leaked fc_buf (about 150 bytes a record here) or fc_error message would grow the
            // process by megabytes over these calls; the managed garbage is collected between.
            using (Codec codec = MakeCodec())
            {
                byte[] plain = Customer();
                byte[] bad = Utf8("{\"password\":");
                Action work = () =>
                {
                    Record r = codec.Encrypt("customers", null, plain, Headers("trace", "t"));
                    codec.Decrypt("customers", null, r.Value, r.Headers);
                    try { codec.Encrypt("customers", null, bad, null); }
                    catch (RecordException) { }
                };
                for (int i = 0; i < 5000; i++) work();
                long before = Rss();
                for (int i = 0; i < 50000; i++) work();
                long grown = Rss() - before;
                Assert.True(grown < 5 << 20, "RSS grew by " + (grown >> 10) + " KiB over 50000 rounds");
            }
        }

        private static long Rss()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            foreach (string line in System.IO.File.ReadAllLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:")) return long.Parse(line.Substring(6).Trim().Split(' ')[0]) * 1024;
            throw new SkipException("no /proc/self/status");
        }
    }
}
