// A minimal JSON reader and writer for the tests and the xtest peer (Mono's profile here has no
// JSON library, and NuGet is unreachable). Objects are Dictionary<string, object> (insertion
// order kept), arrays List<object>, numbers double (or JsonNumber, the literal, from ParseExact),
// and string, bool, null. Also the RECORD of xtests/README.md ({"key", "value", "headers"},
// Base64) to and from Record.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Fieldcrypt.Tests
{
    /// <summary>A JSON number as it was written (ParseExact): written back unchanged, so a
    /// document read and written again keeps every number exactly.</summary>
    internal sealed class JsonNumber
    {
        public JsonNumber(string text)
        {
            Text = text;
        }

        public string Text { get; }

        public override bool Equals(object o)
        {
            var n = o as JsonNumber;
            return n != null && n.Text == Text;
        }

        public override int GetHashCode()
        {
            return Text.GetHashCode();
        }

        public override string ToString()
        {
            return Text;
        }
    }

    internal static class Json
    {
        public static object Parse(string text)
        {
            return Parse(text, false);
        }

        /// <summary>Like Parse, with numbers as JsonNumber (their literal text).</summary>
        public static object ParseExact(string text)
        {
            return Parse(text, true);
        }

        private static object Parse(string text, bool exact)
        {
            int pos = 0;
            object v = Value(text, ref pos, exact);
            Ws(text, ref pos);
            if (pos != text.Length) throw new System.FormatException("trailing JSON at " + pos);
            return v;
        }

        public static object Parse(byte[] utf8)
        {
            return Parse(Encoding.UTF8.GetString(utf8));
        }

        public static string Quote(string s)
        {
            if (s == null) return "null";
            var sb = new StringBuilder("\"");
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20) sb.AppendFormat("\\u{0:x4}", (int)c);
                        else sb.Append(c);
                        break;
                }
            }
            return sb.Append('"').ToString();
        }

        public static bool DeepEquals(object a, object b)
        {
            if (a == null || b == null) return a == null && b == null;
            var da = a as Dictionary<string, object>;
            if (da != null)
            {
                var db = b as Dictionary<string, object>;
                if (db == null || db.Count != da.Count) return false;
                foreach (var kv in da)
                {
                    object other;
                    if (!db.TryGetValue(kv.Key, out other) || !DeepEquals(kv.Value, other)) return false;
                }
                return true;
            }
            var la = a as List<object>;
            if (la != null)
            {
                var lb = b as List<object>;
                if (lb == null || lb.Count != la.Count) return false;
                for (int i = 0; i < la.Count; i++) if (!DeepEquals(la[i], lb[i])) return false;
                return true;
            }
            return a.Equals(b);
        }

        private static void Ws(string t, ref int p)
        {
            while (p < t.Length && (t[p] == ' ' || t[p] == '\t' || t[p] == '\n' || t[p] == '\r')) p++;
        }

        /// <summary>JSON text of a parsed value (or one built of the same types, and integers).</summary>
        public static string Write(object v)
        {
            var sb = new StringBuilder();
            Write(sb, v);
            return sb.ToString();
        }

        private static void Write(StringBuilder sb, object v)
        {
            if (v == null) { sb.Append("null"); return; }
            var o = v as Dictionary<string, object>;
            if (o != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (var kv in o)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    sb.Append(Quote(kv.Key)).Append(": ");
                    Write(sb, kv.Value);
                }
                sb.Append('}');
                return;
            }
            var a = v as List<object>;
            if (a != null)
            {
                sb.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    Write(sb, a[i]);
                }
                sb.Append(']');
                return;
            }
            if (v is string) { sb.Append(Quote((string)v)); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is JsonNumber) { sb.Append(((JsonNumber)v).Text); return; }
            if (v is int || v is long) { sb.Append(Convert.ToString(v, CultureInfo.InvariantCulture)); return; }
            if (v is double)
            {
                double d = (double)v;
                if (double.IsNaN(d) || double.IsInfinity(d)) throw new ArgumentException("JSON has no " + d);
                sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
                return;
            }
            throw new ArgumentException("no JSON for a " + v.GetType().Name);
        }

        /// <summary>A RECORD of xtests/README.md: {"key": B64 | null, "value": B64 | null,
        /// "headers": [[NAME, B64 | null], ...]}.</summary>
        public static Record ToRecord(object json, string what)
        {
            var o = json as Dictionary<string, object>;
            if (o == null) throw new System.FormatException(what + ": a record is a JSON object");
            foreach (string member in new[] { "key", "value", "headers" })
                if (!o.ContainsKey(member)) throw new System.FormatException(what + ": the record has no \"" + member + "\"");
            var list = o["headers"] as List<object>;
            if (list == null) throw new System.FormatException(what + ": \"headers\" is not an array");
            var headers = new List<RecordHeader>();
            foreach (object h in list)
            {
                var pair = h as List<object>;
                if (pair == null || pair.Count != 2 || !(pair[0] is string))
                    throw new System.FormatException(what + ": a header is [NAME, B64 | null]");
                headers.Add(new RecordHeader((string)pair[0], FromBase64(pair[1], what + ": header " + Quote((string)pair[0]))));
            }
            return new Record(FromBase64(o["key"], what + ": key"), FromBase64(o["value"], what + ": value"), headers);
        }

        /// <summary>The JSON object of a RECORD (Base64 with padding; null absent).</summary>
        public static Dictionary<string, object> FromRecord(Record r)
        {
            var headers = new List<object>();
            foreach (RecordHeader h in r.Headers) headers.Add(new List<object> { h.Name, ToBase64(h.Value) });
            return new Dictionary<string, object> { { "key", ToBase64(r.Key) }, { "value", ToBase64(r.Value) }, { "headers", headers } };
        }

        private static string ToBase64(byte[] b)
        {
            return b == null ? null : Convert.ToBase64String(b);
        }

        private static byte[] FromBase64(object v, string what)
        {
            if (v == null) return null;
            var s = v as string;
            if (s == null) throw new System.FormatException(what + ": Base64 text or null expected");
            try
            {
                return Convert.FromBase64String(s);
            }
            catch (System.FormatException e)
            {
                throw new System.FormatException(what + ": not Base64: " + e.Message);
            }
        }

        private static object Value(string t, ref int p, bool exact)
        {
            Ws(t, ref p);
            if (p >= t.Length) throw new System.FormatException("unexpected end of JSON");
            char c = t[p];
            if (c == '{')
            {
                var o = new Dictionary<string, object>();
                p++;
                Ws(t, ref p);
                if (t[p] == '}') { p++; return o; }
                while (true)
                {
                    Ws(t, ref p);
                    string k = Str(t, ref p);
                    Ws(t, ref p);
                    Expect(t, ref p, ':');
                    o[k] = Value(t, ref p, exact);
                    Ws(t, ref p);
                    if (t[p] == ',') { p++; continue; }
                    Expect(t, ref p, '}');
                    return o;
                }
            }
            if (c == '[')
            {
                var a = new List<object>();
                p++;
                Ws(t, ref p);
                if (t[p] == ']') { p++; return a; }
                while (true)
                {
                    a.Add(Value(t, ref p, exact));
                    Ws(t, ref p);
                    if (t[p] == ',') { p++; continue; }
                    Expect(t, ref p, ']');
                    return a;
                }
            }
            if (c == '"') return Str(t, ref p);
            if (Lit(t, ref p, "true")) return true;
            if (Lit(t, ref p, "false")) return false;
            if (Lit(t, ref p, "null")) return null;
            int start = p;
            while (p < t.Length && "+-0123456789.eE".IndexOf(t[p]) >= 0) p++;
            if (p == start) throw new System.FormatException("bad JSON at " + p);
            if (exact)
            {
                string literal = t.Substring(start, p - start);
                double.Parse(literal, NumberStyles.Float, CultureInfo.InvariantCulture);   // a number, or FormatException
                return new JsonNumber(literal);
            }
            return double.Parse(t.Substring(start, p - start), CultureInfo.InvariantCulture);
        }

        private static bool Lit(string t, ref int p, string lit)
        {
            if (string.CompareOrdinal(t, p, lit, 0, lit.Length) != 0) return false;
            p += lit.Length;
            return true;
        }

        private static void Expect(string t, ref int p, char c)
        {
            if (p >= t.Length || t[p] != c) throw new System.FormatException("expected '" + c + "' at " + p);
            p++;
        }

        private static string Str(string t, ref int p)
        {
            Expect(t, ref p, '"');
            var sb = new StringBuilder();
            while (t[p] != '"')
            {
                char c = t[p++];
                if (c != '\\') { sb.Append(c); continue; }
                char e = t[p++];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        sb.Append((char)int.Parse(t.Substring(p, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        p += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
            p++;
            return sb.ToString();
        }
    }
}
