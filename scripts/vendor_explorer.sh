#!/bin/sh
# Rebuild gradscope/render/explorer/vendor/ from npm, reproducibly: a pinned version of
# @hpcc-js/wasm-graphviz (Graphviz compiled to WebAssembly, the wasm inside the script),
# checked against its registry integrity hash, turned from an ES module into a classic
# script that sets `globalThis.GradscopeGraphviz` (the report inlines it; a module
# script cannot be inlined twice on one notebook page).
set -eu
VERSION=1.29.2
INTEGRITY=sha512-AkArBAZERT5OxH52/+kvCHB07cZ6ZNd9GnOvjw+S880bR88D6i27XfK6xj4dBhUDxNA2QPPMdgEcky3x4TJ3KA==
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT="$HERE/gradscope/render/explorer/vendor"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
npm pack --silent "@hpcc-js/wasm-graphviz@$VERSION" >/dev/null
TGZ="hpcc-js-wasm-graphviz-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
if [ "$GOT" != "$INTEGRITY" ]; then
  echo "vendor_explorer: $TGZ does not match the pinned integrity hash" >&2
  exit 1
fi
tar xzf "$TGZ"
mkdir -p "$OUT"
node - package/dist/index.js "$OUT/graphviz.js" "$VERSION" <<'JS'
const fs = require("fs");
const [src, dst, version] = process.argv.slice(2);
let code = fs.readFileSync(src, "utf8").replace(/\n\/\/# sourceMappingURL=.*\s*$/, "");
const m = code.match(/export\{([^}]*)\};?\s*$/);
if (!m) throw new Error("no export statement at the end of the bundle");
const name = m[1].split(",").map(s => s.trim().split(/\s+as\s+/)).find(p => p[1] === "Graphviz");
if (!name) throw new Error("the bundle exports no Graphviz");
code = code.slice(0, m.index);
fs.writeFileSync(dst, `/* @hpcc-js/wasm-graphviz ${version} (Apache-2.0, see LICENSE-wasm-graphviz), ` +
  `vendored by scripts/vendor_explorer.sh */\n(function(){${code}\nglobalThis.GradscopeGraphviz=${name[0]};})();\n`);
JS
cp package/LICENSE "$OUT/LICENSE-wasm-graphviz"
echo "$VERSION" > "$OUT/VERSION"
echo "vendored @hpcc-js/wasm-graphviz $VERSION into $OUT"
