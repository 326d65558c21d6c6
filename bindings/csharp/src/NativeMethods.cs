// The C ABI of libfieldcrypt_ffi (ffi/include/fieldcrypt.h), declared once. Plain DllImport and
// Marshal only (no Span, no function pointers): the same source builds with Mono's mcs (C# 7.2)
// and for netstandard2.0 / .NET 8.
using System;
using System.Runtime.InteropServices;

namespace Fieldcrypt
{
    /// <summary>fc_buf: Rust-owned bytes; freed with fc_buf_free.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FcBuf
    {
        public IntPtr Data;
        public UIntPtr Len;
        public UIntPtr Cap;
    }

    /// <summary>fc_error: filled on failure only; freed with fc_error_free.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FcError
    {
        public int Status;
        public int Retryable;
        public long Index;
        public FcBuf Message;
    }

    /// <summary>fc_stats: 13 uint64_t counters, in the header's order.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct FcStats
    {
        public ulong RecordsEncrypted;
        public ulong RecordsDecrypted;
        public ulong FieldsEncrypted;
        public ulong FieldsDecrypted;
        public ulong FieldsWithheld;
        public ulong DeksCreated;
        public ulong KmsWrapCalls;
        public ulong KmsUnwrapCalls;
        public ulong KmsDeriveCalls;
        public ulong KmsErrors;
        public ulong KmsDenialsCached;
        public ulong DekCacheHits;
        public ulong DekCacheMisses;
    }

    internal static class NativeMethods
    {
        // Resolved as libfieldcrypt_ffi.so / .dylib / fieldcrypt_ffi.dll (README: library finding);
        // a dllmap (Mono) or a DllImportResolver (.NET) can point it at libfieldcrypt_ffi_kafka,
        // the same functions with librdkafka inside (README: "The Kafka-capable library").
        internal const string Lib = "fieldcrypt_ffi";

        // byte[] arguments are blittable: the marshaller pins them and passes a pointer (no copy);
        // a null array is passed as NULL. A SafeHandle argument is AddRef'd for the call, so a
        // concurrent Dispose cannot free the codec under a running call.

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr fc_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr fc_status_name(int status);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_new(
            byte[] policy, UIntPtr policyLen, byte[] config, UIntPtr configLen,
            out CodecHandle codecOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_codec_free(IntPtr codec);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_encrypt(
            CodecHandle codec, byte[] topic, UIntPtr topicLen,
            byte[] key, long keyLen, byte[] value, long valueLen,
            byte[] headers, UIntPtr headersLen, ref FcBuf recordOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_decrypt(
            CodecHandle codec, byte[] topic, UIntPtr topicLen,
            byte[] key, long keyLen, byte[] value, long valueLen,
            byte[] headers, UIntPtr headersLen, ref FcBuf recordOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_encrypt_batch(
            CodecHandle codec, byte[] topic, UIntPtr topicLen,
            byte[] batch, UIntPtr batchLen, ref FcBuf batchOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_decrypt_batch(
            CodecHandle codec, byte[] topic, UIntPtr topicLen,
            byte[] batch, UIntPtr batchLen, ref FcBuf batchOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_stats(CodecHandle codec, out FcStats statsOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_clear_key_cache(CodecHandle codec, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_shred(CodecHandle codec, byte[] subject, UIntPtr subjectLen, out ulong keysOut,
            ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_rotate_subject(CodecHandle codec, byte[] subject, UIntPtr subjectLen,
            ref FcError err);

        // loadedOut is C's 1-byte bool: a byte, not a (4-byte) marshalled bool.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_reload(CodecHandle codec, out byte loadedOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_codec_policy_status(CodecHandle codec, ref FcBuf statusOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_buf_free(ref FcBuf buf);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_error_free(ref FcError err);
    }

    /// <summary>The fc_codec pointer. ReleaseHandle runs once, even when the Codec is never
    /// disposed (SafeHandle's critical finalizer), and never while a call holds a reference.</summary>
    internal sealed class CodecHandle : SafeHandle
    {
        // The marshaller creates the instance for `out CodecHandle` before the call, so a
        // handle returned by fc_codec_new is owned at once and cannot leak.
        public CodecHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.fc_codec_free(handle);
            return true;
        }
    }
}
