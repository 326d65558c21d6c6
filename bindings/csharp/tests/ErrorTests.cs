// Every error kind a C# caller can provoke, triggered for real, mapped to its exception class.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using static Fieldcrypt.Tests.Fixtures;

namespace Fieldcrypt.Tests
{
    internal static class ErrorTests
    {
        public static void Register(List<KeyValuePair<string, Action>> t)
        {
            t.Add(new KeyValuePair<string, Action>("exception classes", Classes));
            t.Add(new KeyValuePair<string, Action>("policy errors", PolicyErrors));
            t.Add(new KeyValuePair<string, Action>("config errors (bad JSON, unknown option, unknown profile)", ConfigErrors));
            t.Add(new KeyValuePair<string, Action>("record errors, batch index", RecordErrors));
            t.Add(new KeyValuePair<string, Action>("malformed fieldcrypt header: format, unsupported_version", FormatErrors));
            t.Add(new KeyValuePair<string, Action>("tampered ciphertext and header: crypto", CryptoErrors));
            t.Add(new KeyValuePair<string, Action>("unknown key: key_not_found", KeyNotFound));
            t.Add(new KeyValuePair<string, Action>("registry: unknown schema id", RegistryErrors));
            t.Add(new KeyValuePair<string, Action>("kms answers (stub Vault): access_denied, key_not_found, kms", KmsErrors));
            t.Add(new KeyValuePair<string, Action>("invalid_argument (malformed packed headers)", InvalidArgument));
            t.Add(new KeyValuePair<string, Action>("invalid strings refused before the call", InvalidStrings));
        }

        private static void Classes()
        {
            var all = new FieldcryptException[]
            {
                new PolicyException("m"), new ConfigException("m"), new RecordException("m"), new HeaderFormatException("m"),
                new UnsupportedVersionException("m"), new CryptoException("m"), new EncryptionKeyNotFoundException("m"),
                new AccessDeniedException("m"), new KmsException("m"), new RegistryException("m"),
                new LimitExceededException("m"), new ShreddedException("m"), new InvalidArgumentException("m"), new PanicException("m"),
                new KafkaClientException("m"),
            };
            int[] codes = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 100, 101, 200 };
            for (int i = 0; i < codes.Length; i++)
            {
                // The kind names are the library's (fc_status_name).
                string name = Native.CString(NativeMethods.fc_status_name(codes[i]));
                Assert.Equal(name, all[i].Kind, all[i].GetType().Name + ".Kind");
                Assert.Equal(codes[i], all[i].Status, all[i].GetType().Name + ".Status");
                Assert.True(!all[i].Retryable && all[i].Index == null, "defaults");
            }
            Assert.Equal("other", Native.CString(NativeMethods.fc_status_name(102)), "FC_ERR_OTHER");
            Assert.Equal("unknown", Native.CString(NativeMethods.fc_status_name(12345)), "unknown status");
            // A status newer than the binding still maps to the base class.
            var err = new FcError { Status = 42, Index = 3 };
            FieldcryptException e = Errors.Take(42, ref err);
            Assert.True(e.GetType() == typeof(FieldcryptException) && e.Index == 3 && e.Kind == "unknown", "unknown status: base class");
        }

        private static void PolicyErrors()
        {
            string config = Config();
            Assert.Fails<PolicyException>(() => new Codec("{not json", config), "policy", "bad JSON");
            Assert.Fails<PolicyException>(() => new Codec(Policy.Replace("\"revision\"", "\"bogus\": 1, \"revision\""), config), "policy", "unknown member");
            var e = Assert.Fails<PolicyException>(() => new Codec(Policy.Replace("local://demo-kek", "ftp://nope"), config), "policy", "bad key scheme");
            Assert.True(e.Message.Contains("customer-secrets"), "the message names the rule: " + e.Message);
        }

        private static void ConfigErrors()
        {
            Assert.Fails<ConfigException>(() => new Codec(Policy, "{not json"), "config", "bad config JSON");
            Assert.Fails<ConfigException>(() => new Codec(Policy, "[1]"), "config", "config not an object");
            var e = Assert.Fails<ConfigException>(() => MakeCodec("\"kmz\": {}"), "config", "unknown option");
            Assert.True(e.Message.Contains("kmz"), "names the option: " + e.Message);
            Assert.Fails<ConfigException>(() => MakeCodec("\"profile\": \"nobody\""), "config", "unknown profile");
            Assert.Fails<ConfigException>(() => MakeCodec("\"limits\": {\"dek_max_uses\": 0}"), "config", "bad limit");
            // A KEK scheme with no client configured fails when a record needs it.
            using (Codec codec = new Codec(Policy, null))
                Assert.Fails<ConfigException>(() => codec.Encrypt("customers", null, Customer(), null), "config", "no KMS client");
        }

        private static void RecordErrors()
        {
            using (Codec codec = MakeCodec())
            {
                var e = Assert.Fails<RecordException>(() => codec.Encrypt("customers", null, Utf8("{\"password\":\"hunter2\","), null), "record", "truncated JSON");
                Assert.True(!e.Message.Contains("hunter2") && e.Index == null, "no plaintext in the message, no index");
                Record sealedRec = codec.Encrypt("customers", null, Customer(), null);
                Assert.Fails<RecordException>(() => codec.Encrypt("customers", null, sealedRec.Value, sealedRec.Headers), "record", "encrypting twice");
                var batch = new List<Record>
                {
                    new Record(null, Customer(), null), new Record(null, Customer(), null),
                    new Record(null, Utf8("not json"), null), new Record(null, Customer(), null),
                };
                e = Assert.Fails<RecordException>(() => codec.EncryptBatch("customers", batch), "record", "bad record in a batch");
                Assert.Equal((int?)2, e.Index, "Index of the failing record");
            }
        }

        private static void FormatErrors()
        {
            using (Codec codec = MakeCodec())
            {
                Record sealedRec = codec.Encrypt("customers", null, Customer(), null);
                byte[] header = sealedRec.GetHeader(Codec.HeaderName);
                Assert.Fails<HeaderFormatException>(() => codec.Decrypt("customers", null, sealedRec.Value, Headers(Codec.HeaderName, header.Take(20).ToArray())), "format", "truncated header");
                Assert.Fails<HeaderFormatException>(() => codec.Decrypt("customers", null, sealedRec.Value, Headers(Codec.HeaderName, null)), "format", "absent header value");
                Assert.Fails<HeaderFormatException>(() => codec.Decrypt("customers", null, sealedRec.Value, Headers(Codec.HeaderName, header.Concat(new byte[] { 0 }).ToArray())), "format", "trailing byte");
                Assert.Fails<HeaderFormatException>(() => codec.Decrypt("customers", null, sealedRec.Value, Headers(Codec.HeaderName, header, Codec.HeaderName, header)), "format", "two headers");
                byte[] v9 = (byte[])header.Clone();
                v9[0] = 9;
                Assert.Fails<UnsupportedVersionException>(() => codec.Decrypt("customers", null, sealedRec.Value, Headers(Codec.HeaderName, v9)), "unsupported_version", "version 9");
                Assert.Fails<HeaderFormatException>(() => codec.DecryptBatch("customers", new[] { sealedRec, new Record(null, sealedRec.Value, Headers(Codec.HeaderName, new byte[] { 1 })) }), "format", "in a batch");
            }
        }

        private static void CryptoErrors()
        {
            using (Codec codec = MakeCodec())
            {
                Record sealedRec = codec.Encrypt("customers", null, Customer(), null);
                string text = Encoding.UTF8.GetString(sealedRec.Value);
                string ct = Field(sealedRec.Value, "password");
                byte[] raw = Convert.FromBase64String(ct);
                raw[raw.Length - 1] ^= 1;
                byte[] tampered = Utf8(text.Replace("\"" + ct + "\"", "\"" + Convert.ToBase64String(raw) + "\""));
                Assert.True(!tampered.SequenceEqual(sealedRec.Value), "tampered");
                var e = Assert.Fails<CryptoException>(() => codec.Decrypt("customers", null, tampered, sealedRec.Headers), "crypto", "tampered ciphertext");
                Assert.True(!e.Retryable, "not retryable");
                // A ciphertext moved from another record does not open here.
                string other = Field(codec.Encrypt("customers", null, Customer(), null).Value, "password");
                byte[] moved = Utf8(text.Replace("\"" + ct + "\"", "\"" + other + "\""));
                Assert.Fails<CryptoException>(() => codec.Decrypt("customers", null, moved, sealedRec.Headers), "crypto", "moved ciphertext");
                byte[] header = (byte[])sealedRec.GetHeader(Codec.HeaderName).Clone();
                header[header.Length - 1] ^= 1;
                Assert.Fails<CryptoException>(() => codec.Decrypt("customers", null, sealedRec.Value, Headers(Codec.HeaderName, header)), "crypto", "tampered header tag");
            }
        }

        private static void KeyNotFound()
        {
            using (Codec producer = new Codec(Policy, "{\"kms\": {\"local\": {\"secrets\": {\"another-kek\": \"x\"}}}}"))
            {
                var e = Assert.Fails<EncryptionKeyNotFoundException>(() => producer.Encrypt("customers", null, Customer(), null), "key_not_found", "unknown KEK");
                Assert.True(e.Message.Contains("local://demo-kek"), "names the KEK: " + e.Message);
                // A consumer that cannot unwrap the DEK gets its profile's fallback, not an error.
                Record sealedRec;
                using (Codec codec = MakeCodec()) sealedRec = codec.Encrypt("customers", null, Customer(), null);
                Record r = producer.Decrypt("customers", null, sealedRec.Value, sealedRec.Headers);
                Assert.Bytes(sealedRec.Value, r.Value, "withheld: unchanged");
                Assert.Equal(2UL, producer.Stats().FieldsWithheld, "fields_withheld");
            }
        }

        private static void RegistryErrors()
        {
            using (Codec codec = MakeCodec(AvroSchemasConfig()))
            {
                byte[] unknown = AvroPayment();
                unknown[4] = 99;
                var e = Assert.Fails<RegistryException>(() => codec.Encrypt("payments", null, unknown, null), "registry", "unknown schema id");
                Assert.True(e.Message.Contains("99") && !e.Retryable, "names the id, not retryable: " + e.Message);
            }
            using (Codec codec = MakeCodec("\"registry\": {\"url\": \"http://127.0.0.1:1\", \"timeout\": 2, \"max_retries\": 0}"))
            {
                var e = Assert.Fails<RegistryException>(() => codec.Encrypt("payments", null, AvroPayment(), null), "registry", "unreachable registry");
                Assert.True(e.Retryable, "unreachable: retryable");
            }
        }

        private static void KmsErrors()
        {
            using (var vault = new StubVault())
            {
                vault.Status = 403;
                vault.Error = "1 error occurred:\n\t* permission denied\n\n";
                using (Codec codec = vault.MakeCodec())
                {
                    var e = Assert.Fails<AccessDeniedException>(() => codec.Encrypt("customers", null, Customer(), null), "access_denied", "403");
                    Assert.True(!e.Retryable && !e.Message.Contains("s.stub-token"), "not retryable, no token in the message");
                }
                vault.Status = 404;
                vault.Error = "no handler for route";
                using (Codec codec = vault.MakeCodec())
                    Assert.Fails<EncryptionKeyNotFoundException>(() => codec.Encrypt("customers", null, Customer(), null), "key_not_found", "404");
                vault.Status = 503;
                vault.Error = "Vault is sealed";
                using (Codec codec = vault.MakeCodec())
                {
                    var e = Assert.Fails<KmsException>(() => codec.Encrypt("customers", null, Customer(), null), "kms", "503");
                    Assert.True(e.Retryable, "503: retryable");
                }
                Assert.True(vault.Requests >= 3, "the stub was asked");
            }
        }

        private static void InvalidArgument()
        {
            // The binding never sends malformed packed data; the raw declaration can.
            using (Codec codec = MakeCodec())
            {
                var handle = (CodecHandle)typeof(Codec).GetField("handle", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance).GetValue(codec);
                byte[] topic = Utf8("customers");
                byte[] value = Customer();
                byte[] headers = { 5, 0, 0, 0, 1 };
                var output = new FcBuf();
                var err = new FcError();
                int status = NativeMethods.fc_codec_encrypt(handle, topic, (UIntPtr)topic.Length, null, -1, value, value.Length,
                    headers, (UIntPtr)headers.Length, ref output, ref err);
                Assert.Equal(100, status, "FC_ERR_INVALID_ARGUMENT");
                Assert.True(output.Data == IntPtr.Zero, "no output on failure");
                var e = Errors.Take(status, ref err);
                Assert.True(e is InvalidArgumentException && e.Kind == "invalid_argument", "InvalidArgumentException: " + e.GetType().Name);
                Assert.True(err.Message.Data == IntPtr.Zero, "fc_error_free resets the message");
            }
        }

        private static void InvalidStrings()
        {
            using (Codec codec = MakeCodec())
            {
                // A lone surrogate is not UTF-8: refused in C#, never silently replaced.
                Assert.Throws<System.Text.EncoderFallbackException>(() => codec.Encrypt("custo\ud800mers", null, Customer(), null), "topic");
                Assert.Throws<System.Text.EncoderFallbackException>(() => codec.Encrypt("customers", null, Customer(), Headers("h\udc00", "x")), "header name");
                Assert.Throws<ArgumentException>(() => codec.Encrypt("customers", null, Customer(), new RecordHeader[] { null }), "null header");
            }
        }
    }
}
