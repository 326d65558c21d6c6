// The codec: a thin wrapper over fc_codec. The crypto, the record formats and the policy rules
// are the Rust core's; this file converts arguments and results, and nothing else.
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;

namespace Fieldcrypt
{
    /// <summary>A Kafka record header. A null Value is an absent value (distinct from empty).
    /// (RecordHeader, not Header: Confluent.Kafka has a Header of its own.)</summary>
    public sealed class RecordHeader
    {
        public RecordHeader(string name, byte[] value)
        {
            if (name == null) throw new ArgumentNullException("name");
            Name = name;
            Value = value;
        }

        public string Name { get; }
        public byte[] Value { get; }

        public override string ToString()
        {
            return Name + "=" + (Value == null ? "null" : "<" + Value.Length + " bytes>");
        }
    }

    /// <summary>A Kafka record's key, value and headers. Null Key or Value means absent (a null
    /// key, a tombstone); an empty array is an empty key or value.</summary>
    public sealed class Record
    {
        private static readonly ReadOnlyCollection<RecordHeader> NoHeaders = new ReadOnlyCollection<RecordHeader>(new RecordHeader[0]);

        public Record(byte[] key, byte[] value, IList<RecordHeader> headers)
            : this(key, value, headers == null ? null : new List<RecordHeader>(headers), true) { }

        // Takes the list as it is (the packed-record reader's fresh list: no second copy).
        internal Record(byte[] key, byte[] value, List<RecordHeader> headers, bool owned)
        {
            Key = key;
            Value = value;
            Headers = headers == null ? (IList<RecordHeader>)NoHeaders : headers;
        }

        public byte[] Key { get; }
        public byte[] Value { get; }

        /// <summary>The headers, in order (a new list; the caller's list is never changed).</summary>
        public IList<RecordHeader> Headers { get; }

        /// <summary>The value of the last header called name, or null (absent or no such header).</summary>
        public byte[] GetHeader(string name)
        {
            for (int i = Headers.Count - 1; i >= 0; i--)
                if (Headers[i].Name == name) return Headers[i].Value;
            return null;
        }

        public override string ToString()
        {
            return "Record(key=" + (Key == null ? "null" : "<" + Key.Length + " bytes>")
                + ", value=" + (Value == null ? "null" : "<" + Value.Length + " bytes>")
                + ", headers=" + Headers.Count + ")";
        }
    }

    /// <summary>The codec's counters (fc_stats), cumulative since the codec was made.</summary>
    public sealed class CodecStats
    {
        internal CodecStats(FcStats s)
        {
            RecordsEncrypted = s.RecordsEncrypted;
            RecordsDecrypted = s.RecordsDecrypted;
            FieldsEncrypted = s.FieldsEncrypted;
            FieldsDecrypted = s.FieldsDecrypted;
            FieldsWithheld = s.FieldsWithheld;
            DeksCreated = s.DeksCreated;
            KmsWrapCalls = s.KmsWrapCalls;
            KmsUnwrapCalls = s.KmsUnwrapCalls;
            KmsDeriveCalls = s.KmsDeriveCalls;
            KmsErrors = s.KmsErrors;
            KmsDenialsCached = s.KmsDenialsCached;
            DekCacheHits = s.DekCacheHits;
            DekCacheMisses = s.DekCacheMisses;
        }

        public ulong RecordsEncrypted { get; }
        public ulong RecordsDecrypted { get; }
        public ulong FieldsEncrypted { get; }
        public ulong FieldsDecrypted { get; }
        public ulong FieldsWithheld { get; }
        public ulong DeksCreated { get; }
        public ulong KmsWrapCalls { get; }
        public ulong KmsUnwrapCalls { get; }
        public ulong KmsDeriveCalls { get; }
        public ulong KmsErrors { get; }
        public ulong KmsDenialsCached { get; }
        public ulong DekCacheHits { get; }
        public ulong DekCacheMisses { get; }
    }

    /// <summary>
    /// Encrypts and decrypts the fields a policy selects in serialized Kafka records. Thread-safe:
    /// share one per process. Dispose frees the native codec (a codec never disposed is freed by
    /// its finalizer).
    /// </summary>
    public sealed class Codec : IDisposable
    {
        /// <summary>The name of the record header fieldcrypt adds (docs/FORMAT.md).</summary>
        public const string HeaderName = "fieldcrypt";

        private readonly CodecHandle handle;

        /// <param name="policyJson">The policy document (JSON text, docs/POLICY.md), or a signed
        /// policy envelope (verified with the configuration's <c>trusted_keys</c>).</param>
        /// <param name="configJson">The configuration (JSON text: kms, profile, registry,
        /// schemas, limits, key_store, trusted_keys...; ffi/README.md); null for none.</param>
        public Codec(string policyJson, string configJson)
            : this(Native.Utf8Bytes(policyJson, "policyJson"),
                configJson == null ? Native.Empty : Native.Utf8Bytes(configJson, "configJson"))
        {
        }

        // policy empty: no policy text (the configuration's policy_source gives it).
        private Codec(byte[] policy, byte[] config)
        {
            var err = new FcError();
            CodecHandle h;
            int status = NativeMethods.fc_codec_new(policy, (UIntPtr)policy.Length, config, (UIntPtr)config.Length,
                out h, ref err);
            if (status != 0)
            {
                if (h != null) h.Dispose();
                throw Errors.Take(status, ref err);
            }
            handle = h;
        }

        /// <summary>A codec whose policy comes from the configuration's <c>policy_source</c> (a
        /// file, a URL or a Kafka topic; signed, checked with <c>trusted_keys</c>): fetched now, then
        /// followed in the background every <c>interval</c>, or only on <see cref="Reload"/> with
        /// <c>"manual": true</c>. A configuration without <c>policy_source</c> is a
        /// <see cref="ConfigException"/> (there is no policy). The Kafka source and the Kafka key
        /// store need the Kafka-capable library (README.md).</summary>
        /// <param name="configJson">The configuration (JSON text, ffi/README.md).</param>
        public static Codec FromConfig(string configJson)
        {
            return new Codec(Native.Empty, Native.Utf8Bytes(configJson, "configJson"));
        }

        /// <summary>The library's version, e.g. "0.1.0".</summary>
        public static string Version
        {
            get { return Native.CString(NativeMethods.fc_version()); }
        }

        /// <summary>Encrypts the fields the policy selects for topic; the result carries the
        /// fieldcrypt header after the given headers. A topic without rules passes through.</summary>
        public Record Encrypt(string topic, byte[] key, byte[] value, IList<RecordHeader> headers)
        {
            return Transform(true, topic, key, value, headers);
        }

        /// <summary>Decrypts what the codec's profile allows; a record without the fieldcrypt
        /// header is returned as it is.</summary>
        public Record Decrypt(string topic, byte[] key, byte[] value, IList<RecordHeader> headers)
        {
            return Transform(false, topic, key, value, headers);
        }

        /// <summary>Encrypts records in one call. The batch fails as a whole at its first failing
        /// record (the exception's Index).</summary>
        public IList<Record> EncryptBatch(string topic, IList<Record> records)
        {
            return TransformBatch(true, topic, records);
        }

        public IList<Record> DecryptBatch(string topic, IList<Record> records)
        {
            return TransformBatch(false, topic, records);
        }

        public CodecStats Stats()
        {
            var err = new FcError();
            FcStats stats;
            int status = NativeMethods.fc_codec_stats(Handle(), out stats, ref err);
            if (status != 0) throw Errors.Take(status, ref err);
            return new CodecStats(stats);
        }

        /// <summary>Forgets the cached data keys: the next records need the KMS again.</summary>
        public void ClearKeyCache()
        {
            var err = new FcError();
            int status = NativeMethods.fc_codec_clear_key_cache(Handle(), ref err);
            if (status != 0) throw Errors.Take(status, ref err);
        }

        /// <summary>Crypto-shreds a data subject (docs/SHREDDING.md): deletes its data keys from the
        /// codec's key store, so none of its records decrypts again. Returns how many.</summary>
        public ulong Shred(string subject)
        {
            byte[] s = Native.Utf8Bytes(subject, "subject");
            var err = new FcError();
            ulong keys;
            int status = NativeMethods.fc_codec_shred(Handle(), s, (UIntPtr)s.Length, out keys, ref err);
            if (status != 0) throw Errors.Take(status, ref err);
            return keys;
        }

        /// <summary>Stores a new data key for a data subject; older records still decrypt.</summary>
        public void RotateSubject(string subject)
        {
            byte[] s = Native.Utf8Bytes(subject, "subject");
            var err = new FcError();
            int status = NativeMethods.fc_codec_rotate_subject(Handle(), s, (UIntPtr)s.Length, ref err);
            if (status != 0) throw Errors.Take(status, ref err);
        }

        /// <summary>Fetches the policy source now (a codec made by <see cref="FromConfig"/>).
        /// True when a new revision is in force, false when the source had nothing new. A
        /// document that does not verify or parse, and an unreachable source, are a
        /// <see cref="PolicyException"/> (the latter retryable); either way the policy in force
        /// stays. A codec with a fixed policy: <see cref="ConfigException"/>.</summary>
        public bool Reload()
        {
            var err = new FcError();
            byte loaded;
            int status = NativeMethods.fc_codec_reload(Handle(), out loaded, ref err);
            if (status != 0) throw Errors.Take(status, ref err);
            return loaded != 0;
        }

        /// <summary>The policy in force (id, revision, signer) and the reload counters.</summary>
        public PolicyStatus GetPolicyStatus()
        {
            CodecHandle h = Handle();
            var output = new FcBuf();
            var err = new FcError();
            try
            {
                int status = NativeMethods.fc_codec_policy_status(h, ref output, ref err);
                if (status != 0) throw Errors.Take(status, ref err);
                return PolicyStatus.FromJson(Native.Utf8(output.Data, output.Len));
            }
            finally
            {
                NativeMethods.fc_buf_free(ref output);
            }
        }

        /// <summary>Frees the native codec. Safe to call twice; later calls throw ObjectDisposedException.</summary>
        public void Dispose()
        {
            handle.Dispose();
        }

        private CodecHandle Handle()
        {
            // The marshaller refuses a closed SafeHandle too; this check gives the usual message.
            if (handle.IsClosed) throw new ObjectDisposedException("Fieldcrypt.Codec");
            return handle;
        }

        private Record Transform(bool encrypt, string topic, byte[] key, byte[] value, IList<RecordHeader> headers)
        {
            byte[] t = Native.Utf8Bytes(topic, "topic");
            byte[] packed = Packing.Headers(headers);
            CodecHandle h = Handle();
            var output = new FcBuf();
            var err = new FcError();
            try
            {
                // len -1: absent (null key, tombstone); the pointer is not read then.
                long keyLen = key == null ? -1 : key.LongLength;
                long valueLen = value == null ? -1 : value.LongLength;
                int status = encrypt
                    ? NativeMethods.fc_codec_encrypt(h, t, (UIntPtr)t.Length, key, keyLen, value, valueLen,
                        packed, (UIntPtr)packed.Length, ref output, ref err)
                    : NativeMethods.fc_codec_decrypt(h, t, (UIntPtr)t.Length, key, keyLen, value, valueLen,
                        packed, (UIntPtr)packed.Length, ref output, ref err);
                if (status != 0) throw Errors.Take(status, ref err);
                return Packing.ReadRecord(output);
            }
            finally
            {
                NativeMethods.fc_buf_free(ref output);
            }
        }

        private IList<Record> TransformBatch(bool encrypt, string topic, IList<Record> records)
        {
            byte[] t = Native.Utf8Bytes(topic, "topic");
            byte[] packed = Packing.Batch(records);
            CodecHandle h = Handle();
            var output = new FcBuf();
            var err = new FcError();
            try
            {
                int status = encrypt
                    ? NativeMethods.fc_codec_encrypt_batch(h, t, (UIntPtr)t.Length, packed, (UIntPtr)packed.Length,
                        ref output, ref err)
                    : NativeMethods.fc_codec_decrypt_batch(h, t, (UIntPtr)t.Length, packed, (UIntPtr)packed.Length,
                        ref output, ref err);
                if (status != 0) throw Errors.Take(status, ref err);
                return Packing.ReadBatch(output);
            }
            finally
            {
                NativeMethods.fc_buf_free(ref output);
            }
        }
    }
}
