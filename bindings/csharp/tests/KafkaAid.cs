// Test aid: produce and consume packed records through libfieldcrypt_ffi_kafka (ffi/kafka, a
// minimal librdkafka wrapper), because no .NET Kafka client can be installed here (NuGet is
// unreachable). Not part of the binding: applications use Confluent.Kafka and the Codec.
using System;
using System.Runtime.InteropServices;

namespace Fieldcrypt.Kafka
{
    internal static class KafkaNative
    {
        internal const string Lib = "fieldcrypt_ffi_kafka";

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_kafka_producer_new(byte[] config, UIntPtr configLen, out ProducerHandle producerOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_kafka_produce(ProducerHandle producer, byte[] topic, UIntPtr topicLen,
            byte[] record, UIntPtr recordLen, int timeoutMs, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_kafka_producer_free(IntPtr producer);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_kafka_consumer_new(byte[] config, UIntPtr configLen, byte[] topics, UIntPtr topicsLen,
            out ConsumerHandle consumerOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int fc_kafka_consumer_poll(ConsumerHandle consumer, int timeoutMs, ref FcBuf recordOut, ref FcError err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_kafka_consumer_free(IntPtr consumer);

        // This library's own copies of the fieldcrypt.h frees: what it allocates, it frees.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_buf_free(ref FcBuf buf);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void fc_error_free(ref FcError err);

        /// <summary>Errors.Take, freeing with this library.</summary>
        internal static FieldcryptException Take(int status, ref FcError err)
        {
            try
            {
                return Errors.Create(status, Native.Utf8(err.Message.Data, err.Message.Len), err.Retryable != 0,
                    err.Index < 0 ? (int?)null : (int)err.Index);
            }
            finally
            {
                fc_error_free(ref err);
            }
        }
    }

    internal sealed class ProducerHandle : SafeHandle
    {
        public ProducerHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            KafkaNative.fc_kafka_producer_free(handle);
            return true;
        }
    }

    internal sealed class ConsumerHandle : SafeHandle
    {
        public ConsumerHandle() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            KafkaNative.fc_kafka_consumer_free(handle);
            return true;
        }
    }

    /// <summary>Sends records and waits for each acknowledgement.</summary>
    internal sealed class Producer : IDisposable
    {
        private readonly ProducerHandle handle;

        /// <param name="configJson">librdkafka properties as a JSON object of strings.</param>
        public Producer(string configJson)
        {
            byte[] config = Native.Utf8Bytes(configJson, "configJson");
            var err = new FcError();
            ProducerHandle h;
            int status = KafkaNative.fc_kafka_producer_new(config, (UIntPtr)config.Length, out h, ref err);
            if (status != 0)
            {
                if (h != null) h.Dispose();
                throw KafkaNative.Take(status, ref err);
            }
            handle = h;
        }

        public void Produce(string topic, Record record, int timeoutMs = 30000)
        {
            byte[] t = Native.Utf8Bytes(topic, "topic");
            byte[] packed = Packing.OneRecord(record);
            var err = new FcError();
            int status = KafkaNative.fc_kafka_produce(handle, t, (UIntPtr)t.Length, packed, (UIntPtr)packed.Length, timeoutMs, ref err);
            if (status != 0) throw KafkaNative.Take(status, ref err);
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }

    internal sealed class Consumer : IDisposable
    {
        private readonly ConsumerHandle handle;

        /// <param name="configJson">librdkafka properties (needs "group.id").</param>
        /// <param name="topics">comma-separated topic names.</param>
        public Consumer(string configJson, string topics)
        {
            byte[] config = Native.Utf8Bytes(configJson, "configJson");
            byte[] t = Native.Utf8Bytes(topics, "topics");
            var err = new FcError();
            ConsumerHandle h;
            int status = KafkaNative.fc_kafka_consumer_new(config, (UIntPtr)config.Length, t, (UIntPtr)t.Length, out h, ref err);
            if (status != 0)
            {
                if (h != null) h.Dispose();
                throw KafkaNative.Take(status, ref err);
            }
            handle = h;
        }

        /// <summary>The next record, or null when none came within timeoutMs.</summary>
        public Record Poll(int timeoutMs)
        {
            var output = new FcBuf();
            var err = new FcError();
            try
            {
                int status = KafkaNative.fc_kafka_consumer_poll(handle, timeoutMs, ref output, ref err);
                if (status != 0) throw KafkaNative.Take(status, ref err);
                return output.Len == UIntPtr.Zero ? null : Packing.ReadRecord(output);
            }
            finally
            {
                KafkaNative.fc_buf_free(ref output);
            }
        }

        public void Dispose()
        {
            handle.Dispose();
        }
    }
}
