// One exception class per status code of the C ABI (ffi/README.md, "Status codes"). Names that
// would clash with common BCL / Confluent.Kafka types carry a qualifier: HeaderFormatException
// (System.FormatException), EncryptionKeyNotFoundException
// (System.Collections.Generic.KeyNotFoundException), KafkaClientException
// (Confluent.Kafka.KafkaException).
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Fieldcrypt
{
    /// <summary>A fieldcrypt failure. Messages never hold plaintext or key material.</summary>
    public class FieldcryptException : Exception
    {
        public FieldcryptException(string message, int status, string kind, bool retryable, int? index)
            : base(message)
        {
            Status = status;
            Kind = kind;
            Retryable = retryable;
            Index = index;
        }

        /// <summary>The C ABI status code (FC_ERR_*).</summary>
        public int Status { get; }

        /// <summary>The stable lower-case kind shared by every binding: "policy", "crypto", ...</summary>
        public string Kind { get; }

        /// <summary>True when the same call may succeed later (KMS or registry unreachable...).</summary>
        public bool Retryable { get; }

        /// <summary>The failing record of a batch; null for single-record calls.</summary>
        public int? Index { get; }
    }

    /// <summary>The policy document is invalid.</summary>
    public sealed class PolicyException : FieldcryptException
    {
        public PolicyException(string message, bool retryable = false, int? index = null)
            : base(message, 1, "policy", retryable, index) { }
    }

    /// <summary>The configuration is invalid (unknown option, no KMS client for a scheme, unknown profile...).</summary>
    public sealed class ConfigException : FieldcryptException
    {
        public ConfigException(string message, bool retryable = false, int? index = null)
            : base(message, 2, "config", retryable, index) { }
    }

    /// <summary>The record is not what the policy expects (not JSON, missing key...).</summary>
    public sealed class RecordException : FieldcryptException
    {
        public RecordException(string message, bool retryable = false, int? index = null)
            : base(message, 3, "record", retryable, index) { }
    }

    /// <summary>The fieldcrypt header is malformed (the core's "format" kind).</summary>
    public sealed class HeaderFormatException : FieldcryptException
    {
        public HeaderFormatException(string message, bool retryable = false, int? index = null)
            : base(message, 4, "format", retryable, index) { }
    }

    /// <summary>The fieldcrypt header has a format version this build does not read.</summary>
    public sealed class UnsupportedVersionException : FieldcryptException
    {
        public UnsupportedVersionException(string message, bool retryable = false, int? index = null)
            : base(message, 5, "unsupported_version", retryable, index) { }
    }

    /// <summary>Authentication failed: tampered ciphertext or header, wrong key.</summary>
    public sealed class CryptoException : FieldcryptException
    {
        public CryptoException(string message, bool retryable = false, int? index = null)
            : base(message, 6, "crypto", retryable, index) { }
    }

    /// <summary>A key (KEK or DEK) is unknown to the KMS or key store (the core's "key_not_found").</summary>
    public sealed class EncryptionKeyNotFoundException : FieldcryptException
    {
        public EncryptionKeyNotFoundException(string message, bool retryable = false, int? index = null)
            : base(message, 7, "key_not_found", retryable, index) { }
    }

    /// <summary>The KMS refused this client access to a key.</summary>
    public sealed class AccessDeniedException : FieldcryptException
    {
        public AccessDeniedException(string message, bool retryable = false, int? index = null)
            : base(message, 8, "access_denied", retryable, index) { }
    }

    /// <summary>The KMS failed or could not be reached.</summary>
    public sealed class KmsException : FieldcryptException
    {
        public KmsException(string message, bool retryable = false, int? index = null)
            : base(message, 9, "kms", retryable, index) { }
    }

    /// <summary>The schema registry failed, could not be reached, or does not know a schema.</summary>
    public sealed class RegistryException : FieldcryptException
    {
        public RegistryException(string message, bool retryable = false, int? index = null)
            : base(message, 10, "registry", retryable, index) { }
    }

    /// <summary>A data key reached its hard usage limit and no new one could be made.</summary>
    public sealed class LimitExceededException : FieldcryptException
    {
        public LimitExceededException(string message, bool retryable = false, int? index = null)
            : base(message, 11, "limit_exceeded", retryable, index) { }
    }

    /// <summary>The record's data key was shredded (its data subject was erased): unreadable for
    /// good.</summary>
    public sealed class ShreddedException : FieldcryptException
    {
        public ShreddedException(string message, bool retryable = false, int? index = null)
            : base(message, 12, "shredded", retryable, index) { }
    }

    /// <summary>The library was called wrongly (NULL, invalid UTF-8, malformed packed data): a
    /// binding bug rather than a caller's.</summary>
    public sealed class InvalidArgumentException : FieldcryptException
    {
        public InvalidArgumentException(string message, bool retryable = false, int? index = null)
            : base(message, 100, "invalid_argument", retryable, index) { }
    }

    /// <summary>A panic inside the library, caught at the ABI boundary.</summary>
    public sealed class PanicException : FieldcryptException
    {
        public PanicException(string message, bool retryable = false, int? index = null)
            : base(message, 101, "panic", retryable, index) { }
    }

    /// <summary>A failure of the minimal Kafka client (libfieldcrypt_ffi_kafka, a test aid).</summary>
    public sealed class KafkaClientException : FieldcryptException
    {
        public KafkaClientException(string message, bool retryable = false, int? index = null)
            : base(message, 200, "kafka", retryable, index) { }
    }

    internal static class Errors
    {
        /// <summary>Turns a failed call's fc_error into an exception, and frees it.</summary>
        internal static FieldcryptException Take(int status, ref FcError err)
        {
            string message;
            bool retryable;
            int? index;
            try
            {
                message = Native.Utf8(err.Message.Data, err.Message.Len);
                retryable = err.Retryable != 0;
                index = err.Index < 0 ? (int?)null : (int)err.Index;
            }
            finally
            {
                NativeMethods.fc_error_free(ref err);
            }
            return Create(status, message, retryable, index);
        }

        /// <summary>The exception class of a status.</summary>
        internal static FieldcryptException Create(int status, string message, bool retryable, int? index)
        {
            if (string.IsNullOrEmpty(message)) message = "fieldcrypt error " + status;
            switch (status)
            {
                case 1: return new PolicyException(message, retryable, index);
                case 2: return new ConfigException(message, retryable, index);
                case 3: return new RecordException(message, retryable, index);
                case 4: return new HeaderFormatException(message, retryable, index);
                case 5: return new UnsupportedVersionException(message, retryable, index);
                case 6: return new CryptoException(message, retryable, index);
                case 7: return new EncryptionKeyNotFoundException(message, retryable, index);
                case 8: return new AccessDeniedException(message, retryable, index);
                case 9: return new KmsException(message, retryable, index);
                case 10: return new RegistryException(message, retryable, index);
                case 11: return new LimitExceededException(message, retryable, index);
                case 12: return new ShreddedException(message, retryable, index);
                case 100: return new InvalidArgumentException(message, retryable, index);
                case 101: return new PanicException(message, retryable, index);
                case 200: return new KafkaClientException(message, retryable, index);
                default:
                    // FC_ERR_OTHER (102: a core error kind newer than the ABI's list) or a status
                    // newer than this binding: the base class, with the library's name for it.
                    return new FieldcryptException(message, status, Native.CString(NativeMethods.fc_status_name(status)),
                        retryable, index);
            }
        }
    }

    internal static class Native
    {
        internal static readonly byte[] Empty = new byte[0];

        // Strict: a string with a lone surrogate is refused rather than silently changed.
        internal static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>Copies len UTF-8 bytes at ptr into a string.</summary>
        internal static string Utf8(IntPtr ptr, UIntPtr len)
        {
            ulong n = len.ToUInt64();
            if (ptr == IntPtr.Zero || n == 0) return "";
            if (n > int.MaxValue) throw new InvalidOperationException("fieldcrypt: string too long");
            var bytes = new byte[(int)n];
            Marshal.Copy(ptr, bytes, 0, (int)n);
            return Encoding.UTF8.GetString(bytes);
        }

        /// <summary>A static NUL-terminated UTF-8 string (fc_version, fc_status_name).</summary>
        internal static string CString(IntPtr ptr)
        {
            if (ptr == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(ptr, n) != 0) n++;
            var bytes = new byte[n];
            Marshal.Copy(ptr, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }

        internal static byte[] Utf8Bytes(string s, string paramName)
        {
            if (s == null) throw new ArgumentNullException(paramName);
            return StrictUtf8.GetBytes(s);
        }
    }
}
