#!/usr/bin/env bash
# Regenerates the signed fixtures with a fresh, throw-away signing key (the private key is not
# kept: these fixtures only need to verify). Usage: schemas/governance/make.sh [path/to/fieldcrypt]
set -euo pipefail
cd "$(dirname "$0")"
cli="${1:-${FIELDCRYPT_BIN:-fieldcrypt}}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
public=$("$cli" policy keygen --out "$tmp/key.pem" | tail -n 1)
printf '{\n  "governance-test": "%s"\n}\n' "$public" > trusted-keys.json
for r in r1 r2; do
  "$cli" policy sign "policy-$r.json" --key "$tmp/key.pem" --key-id governance-test --out "policy-$r.signed.json"
done
# Tampered: revision 2's envelope with its policy text changed after signing (card -> name).
python3 - <<'PY'
import json
d = json.load(open("policy-r2.signed.json"))
d["policy"] = d["policy"].replace('"card"', '"name"')
json.dump(d, open("policy-r2.tampered.json", "w"), indent=2)
open("policy-r2.tampered.json", "a").write("\n")
PY
"$cli" policy validate policy-r1.signed.json --trust trusted-keys.json
"$cli" policy validate policy-r2.signed.json --trust trusted-keys.json
if "$cli" policy validate policy-r2.tampered.json --trust trusted-keys.json 2>/dev/null; then
  echo "the tampered fixture verified" >&2; exit 1
fi
