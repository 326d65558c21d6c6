// A minimal JSON reader and string quoting for the tests (Mono's profile here has no JSON
// library, and NuGet is unreachable). Objects are Dictionary<string, object> (insertion order
// kept), arrays List<object>, numbers double, and string, bool, null.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Fieldcrypt.Tests
{
    internal static class Json
    {
        public static object Parse(string text)
        {
            int pos = 0;
            object v = Value(text, ref pos);
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

        private static object Value(string t, ref int p)
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
                    o[k] = Value(t, ref p);
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
                    a.Add(Value(t, ref p));
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
