// Compiles the contracts with the pinned solcjs (package-lock.json) into OUT_DIR:
// <Name>.abi.json and <Name>.bin (deployment bytecode, hex, no metadata hash).
// Usage: node compile.js OUT_DIR   (run by build.sh)
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const PINNED = '0.8.30';
const HERE = __dirname;
const SOURCES = ['src/AgoraMarket.sol', 'test/TestToken.sol', 'test/HostileToken.sol'];
const CONTRACTS = { 'src/AgoraMarket.sol': 'AgoraMarket', 'test/TestToken.sol': 'TestToken', 'test/HostileToken.sol': 'HostileToken' };

const outDir = process.argv[2];
if (!outDir) {
  console.error('usage: node compile.js OUT_DIR');
  process.exit(2);
}
if (!solc.version().startsWith(PINNED + '+')) {
  console.error(`compile.js: solc ${solc.version()} is not the pinned ${PINNED}; run npm ci --ignore-scripts in contracts/`);
  process.exit(1);
}

const input = {
  language: 'Solidity',
  sources: Object.fromEntries(SOURCES.map((s) => [s, { content: fs.readFileSync(path.join(HERE, s), 'utf8') }])),
  settings: {
    optimizer: { enabled: true, runs: 1000 },
    evmVersion: 'cancun',
    // No metadata hash or CBOR trailer: the bytecode depends on the sources only, not on
    // file paths, comments' whitespace in other files or the compiler build's metadata.
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
};

// Imports resolve inside node_modules only (@openzeppelin/contracts), never the network.
function findImports(importPath) {
  const file = path.join(HERE, 'node_modules', importPath);
  if (!file.startsWith(path.join(HERE, 'node_modules') + path.sep) || !fs.existsSync(file)) {
    return { error: `import ${importPath} not found under contracts/node_modules` };
  }
  return { contents: fs.readFileSync(file, 'utf8') };
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const e of output.errors || []) {
  console.error(e.formattedMessage);
  if (e.severity === 'error') failed = true;
}
if (failed) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const [source, name] of Object.entries(CONTRACTS)) {
  const c = output.contracts[source][name];
  fs.writeFileSync(path.join(outDir, `${name}.abi.json`), JSON.stringify(c.abi, null, 2) + '\n');
  fs.writeFileSync(path.join(outDir, `${name}.bin`), c.evm.bytecode.object + '\n');
}
