// The policy status of a codec (fc_codec_policy_status), and the small JSON reader it needs: the
// status is a flat JSON object (one nested object, last_error), and neither netstandard2.0 nor
// Mono's default profile offers a JSON parser without an extra package.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Fieldcrypt
{
    /// <summary>The policy in force in a codec and its reload counters (immutable; a snapshot
    /// taken by <see cref="Codec.GetPolicyStatus"/>).</summary>
    public sealed class PolicyStatus
    {
        public PolicyStatus(string policyId, ulong revision, string signedBy, string source, ulong loads,
            ulong rejections, ulong fetchErrors, string lastErrorKind, string lastErrorMessage)
        {
            PolicyId = policyId;
            Revision = revision;
            SignedBy = signedBy;
            Source = source;
            Loads = loads;
            Rejections = rejections;
            FetchErrors = fetchErrors;
            LastErrorKind = lastErrorKind;
            LastErrorMessage = lastErrorMessage;
        }

        /// <summary>The policy's <c>id</c>.</summary>
        public string PolicyId { get; }

        /// <summary>The policy's <c>revision</c>.</summary>
        public ulong Revision { get; }

        /// <summary>The trusted key id whose signature verified the policy in force; null if the
        /// policy was not signed.</summary>
        public string SignedBy { get; }

        /// <summary>Where the policy is read from (the policy source's description); null for a
        /// policy given to the constructor.</summary>
        public string Source { get; }

        /// <summary>Policies loaded, the first included.</summary>
        public ulong Loads { get; }

        /// <summary>Documents refused (signature, parse, rollback, policy id...).</summary>
        public ulong Rejections { get; }

        /// <summary>Fetches that failed (source unreachable, unreadable, timed out).</summary>
        public ulong FetchErrors { get; }

        /// <summary>The error kind (<see cref="FieldcryptException.Kind"/>: "policy", "kms"...) of
        /// the last rejection or failed fetch; null if none happened.</summary>
        public string LastErrorKind { get; }

        /// <summary>The message of that error; null if none happened.</summary>
        public string LastErrorMessage { get; }

        public override string ToString()
        {
            return "PolicyStatus(" + PolicyId + " r" + Revision + ", signed by " + (SignedBy ?? "nobody")
                + ", source " + (Source ?? "none") + ", loads " + Loads + ", rejections " + Rejections
                + ", fetch errors " + FetchErrors
                + (LastErrorKind == null ? "" : ", last error " + LastErrorKind + ": " + LastErrorMessage) + ")";
        }

        internal static PolicyStatus FromJson(string json)
        {
            Dictionary<string, object> o = StatusJson.Parse(json);
            var lastError = o.ContainsKey("last_error") ? o["last_error"] as Dictionary<string, object> : null;
            return new PolicyStatus(
                Text(o, "policy_id"), Number(o, "revision"), Text(o, "signed_by"), Text(o, "source"),
                Number(o, "loads"), Number(o, "rejections"), Number(o, "fetch_errors"),
                lastError == null ? null : Text(lastError, "kind"),
                lastError == null ? null : Text(lastError, "message"));
        }

        private static string Text(Dictionary<string, object> o, string name)
        {
            object v;
            if (!o.TryGetValue(name, out v) || v == null) return null;
            var s = v as string;
            if (s == null) throw new InvalidOperationException("fieldcrypt: policy status: " + name + " is not a string");
            return s;
        }

        private static ulong Number(Dictionary<string, object> o, string name)
        {
            object v;
            if (!o.TryGetValue(name, out v) || !(v is StatusJson.Number))
                throw new InvalidOperationException("fieldcrypt: policy status: " + name + " is not a number");
            return ulong.Parse(((StatusJson.Number)v).Text, NumberStyles.None, CultureInfo.InvariantCulture);
        }
    }

    /// <summary>A strict JSON reader for the library's status objects: objects become
    /// Dictionary&lt;string, object&gt;, strings string, numbers <see cref="Number"/> (the literal),
    /// true/false bool, null null. Arrays are not needed and refused.</summary>
    internal static class StatusJson
    {
        internal sealed class Number
        {
            internal Number(string text)
            {
                Text = text;
            }

            internal string Text { get; }
        }

        internal static Dictionary<string, object> Parse(string text)
        {
            int pos = 0;
            Skip(text, ref pos);
            var o = Value(text, ref pos) as Dictionary<string, object>;
            Skip(text, ref pos);
            if (o == null || pos != text.Length) throw Bad(pos);
            return o;
        }

        private static object Value(string s, ref int pos)
        {
            if (pos >= s.Length) throw Bad(pos);
            char c = s[pos];
            if (c == '{') return Object(s, ref pos);
            if (c == '"') return String(s, ref pos);
            if (c == '-' || (c >= '0' && c <= '9'))
            {
                int start = pos;
                while (pos < s.Length && "+-.eE0123456789".IndexOf(s[pos]) >= 0) pos++;
                return new Number(s.Substring(start, pos - start));
            }
            if (Word(s, ref pos, "true")) return true;
            if (Word(s, ref pos, "false")) return false;
            if (Word(s, ref pos, "null")) return null;
            throw Bad(pos);
        }

        private static Dictionary<string, object> Object(string s, ref int pos)
        {
            var o = new Dictionary<string, object>();
            pos++;
            Skip(s, ref pos);
            if (pos < s.Length && s[pos] == '}')
            {
                pos++;
                return o;
            }
            while (true)
            {
                Skip(s, ref pos);
                if (pos >= s.Length || s[pos] != '"') throw Bad(pos);
                string name = String(s, ref pos);
                Skip(s, ref pos);
                if (pos >= s.Length || s[pos] != ':') throw Bad(pos);
                pos++;
                Skip(s, ref pos);
                o[name] = Value(s, ref pos);
                Skip(s, ref pos);
                if (pos >= s.Length) throw Bad(pos);
                if (s[pos] == '}')
                {
                    pos++;
                    return o;
                }
                if (s[pos] != ',') throw Bad(pos);
                pos++;
            }
        }

        private static string String(string s, ref int pos)
        {
            var b = new StringBuilder();
            pos++;
            while (true)
            {
                if (pos >= s.Length) throw Bad(pos);
                char c = s[pos++];
                if (c == '"') return b.ToString();
                if (c != '\\')
                {
                    b.Append(c);
                    continue;
                }
                if (pos >= s.Length) throw Bad(pos);
                char e = s[pos++];
                switch (e)
                {
                    case '"': b.Append('"'); break;
                    case '\\': b.Append('\\'); break;
                    case '/': b.Append('/'); break;
                    case 'b': b.Append('\b'); break;
                    case 'f': b.Append('\f'); break;
                    case 'n': b.Append('\n'); break;
                    case 'r': b.Append('\r'); break;
                    case 't': b.Append('\t'); break;
                    case 'u':
                        if (pos + 4 > s.Length) throw Bad(pos);
                        b.Append((char)int.Parse(s.Substring(pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture));
                        pos += 4;
                        break;
                    default: throw Bad(pos - 1);
                }
            }
        }

        private static bool Word(string s, ref int pos, string word)
        {
            if (string.CompareOrdinal(s, pos, word, 0, word.Length) != 0) return false;
            pos += word.Length;
            return true;
        }

        private static void Skip(string s, ref int pos)
        {
            while (pos < s.Length && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) pos++;
        }

        private static Exception Bad(int pos)
        {
            return new InvalidOperationException("fieldcrypt: unexpected policy status JSON at " + pos);
        }
    }
}
