// The packed records of the C ABI (ffi/README.md, "Packed records"): u32 little-endian lengths,
// 0xFFFFFFFF for an absent value. Marshaling only: no record format logic lives here.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Fieldcrypt
{
    internal static class Packing
    {
        private const uint Null32 = 0xFFFFFFFF;

        /// <summary>Packed headers for fc_codec_encrypt/decrypt; empty (len 0) for none.</summary>
        internal static byte[] Headers(IList<RecordHeader> headers)
        {
            if (headers == null || headers.Count == 0) return Native.Empty;
            var names = new byte[headers.Count][];
            long size = 4 + HeadersSize(headers, names);
            var w = new Writer(size);
            w.U32((uint)headers.Count);
            w.Headers(headers, names);
            return w.Done();
        }

        /// <summary>batch := count:u32 record*count</summary>
        internal static byte[] Batch(IList<Record> records)
        {
            if (records == null) throw new ArgumentNullException("records");
            var names = new byte[records.Count][][];
            long size = 4;
            for (int i = 0; i < records.Count; i++)
            {
                Record r = records[i];
                if (r == null) throw new ArgumentException("records[" + i + "] is null", "records");
                names[i] = new byte[r.Headers.Count][];
                size += 4 + Len(r.Key) + 4 + Len(r.Value) + 4 + HeadersSize(r.Headers, names[i]);
            }
            var w = new Writer(size);
            w.U32((uint)records.Count);
            for (int i = 0; i < records.Count; i++)
            {
                Record r = records[i];
                w.Bytes(r.Key);
                w.Bytes(r.Value);
                w.U32((uint)r.Headers.Count);
                w.Headers(r.Headers, names[i]);
            }
            return w.Done();
        }

        /// <summary>record := key value headers (the Kafka aid's fc_kafka_produce).</summary>
        internal static byte[] OneRecord(Record r)
        {
            var names = new byte[r.Headers.Count][];
            var w = new Writer(4 + Len(r.Key) + 4 + Len(r.Value) + 4 + HeadersSize(r.Headers, names));
            w.Bytes(r.Key);
            w.Bytes(r.Value);
            w.U32((uint)r.Headers.Count);
            w.Headers(r.Headers, names);
            return w.Done();
        }

        /// <summary>The packed record of a Rust output buffer (a copy: the buffer is freed by the caller).</summary>
        internal static Record ReadRecord(FcBuf buf)
        {
            var r = new Reader(buf);
            Record record = r.Record();
            r.End();
            return record;
        }

        internal static List<Record> ReadBatch(FcBuf buf)
        {
            var r = new Reader(buf);
            uint count = r.U32();
            // Every record takes at least 12 bytes: a bogus count cannot make us allocate much.
            var records = new List<Record>((int)Math.Min(count, (uint)(r.Remaining / 12)));
            for (uint i = 0; i < count; i++) records.Add(r.Record());
            r.End();
            return records;
        }

        private static long Len(byte[] b)
        {
            return b == null ? 0 : b.LongLength;
        }

        // Encodes the names (kept for the write) and returns the size of the headers after the count.
        private static long HeadersSize(IList<RecordHeader> headers, byte[][] names)
        {
            long size = 0;
            for (int i = 0; i < headers.Count; i++)
            {
                RecordHeader h = headers[i];
                if (h == null) throw new ArgumentException("headers[" + i + "] is null", "headers");
                names[i] = Native.Utf8Bytes(h.Name, "headers[" + i + "].Name");
                size += 4 + names[i].Length + 4 + Len(h.Value);
            }
            return size;
        }

        private struct Writer
        {
            private readonly byte[] buf;
            private int pos;

            internal Writer(long size)
            {
                // Each length is a u32 and the whole must fit one byte[].
                if (size > int.MaxValue) throw new ArgumentException("fieldcrypt: record or batch larger than 2 GiB");
                buf = new byte[size];
                pos = 0;
            }

            internal void U32(uint v)
            {
                buf[pos] = (byte)v;
                buf[pos + 1] = (byte)(v >> 8);
                buf[pos + 2] = (byte)(v >> 16);
                buf[pos + 3] = (byte)(v >> 24);
                pos += 4;
            }

            internal void Bytes(byte[] b)
            {
                if (b == null)
                {
                    U32(Null32);
                    return;
                }
                U32((uint)b.Length);
                Buffer.BlockCopy(b, 0, buf, pos, b.Length);
                pos += b.Length;
            }

            internal void Headers(IList<RecordHeader> headers, byte[][] names)
            {
                for (int i = 0; i < headers.Count; i++)
                {
                    Bytes(names[i]);
                    Bytes(headers[i].Value);
                }
            }

            internal byte[] Done()
            {
                if (pos != buf.Length) throw new InvalidOperationException("fieldcrypt: packing size mismatch");
                return buf;
            }
        }

        private struct Reader
        {
            private readonly IntPtr data;
            private readonly long len;
            private long pos;

            internal Reader(FcBuf buf)
            {
                data = buf.Data;
                len = (long)buf.Len.ToUInt64();
                pos = 0;
                if (len > int.MaxValue) Malformed();
            }

            internal long Remaining { get { return len - pos; } }

            internal uint U32()
            {
                Need(4);
                uint v = (uint)Marshal.ReadInt32(data, (int)pos);
                if (!BitConverter.IsLittleEndian)
                    v = (v >> 24) | ((v >> 8) & 0xFF00) | ((v << 8) & 0xFF0000) | (v << 24);
                pos += 4;
                return v;
            }

            internal byte[] Bytes()
            {
                uint n = U32();
                if (n == Null32) return null;
                Need(n);
                var b = new byte[n];
                if (n > 0) Marshal.Copy(new IntPtr(data.ToInt64() + pos), b, 0, (int)n);
                pos += n;
                return b;
            }

            internal Record Record()
            {
                byte[] key = Bytes();
                byte[] value = Bytes();
                uint count = U32();
                var headers = new List<RecordHeader>((int)Math.Min(count, (uint)(Remaining / 8)));
                for (uint i = 0; i < count; i++)
                {
                    byte[] name = Bytes();
                    if (name == null) Malformed();
                    headers.Add(new RecordHeader(Native.StrictUtf8.GetString(name), Bytes()));
                }
                return new Record(key, value, headers, true);
            }

            internal void End()
            {
                if (pos != len) Malformed();
            }

            private void Need(long n)
            {
                if (n > len - pos) Malformed();
            }

            private static void Malformed()
            {
                // Only a library/binding mismatch gets here: the library validates what it writes.
                throw new InvalidOperationException("fieldcrypt: malformed packed data from libfieldcrypt_ffi");
            }
        }
    }
}
