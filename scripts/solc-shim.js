#!/usr/bin/env node
/*
 * solc-shim: a drop-in for the native `solc` binary, backed by the npm package `solc` (solc-js / wasm).
 *
 * Why: this machine cannot download native solc (py-solc-x, foundryup, solc-select all fail offline).
 * The `solcjs` CLI is not a drop-in: it prints a banner, rejects --allow-paths and truncates piped output
 * at 64 KiB. This shim implements the two things our tools need:
 *
 *   solc --version                       (py-solc-x / ape-solidity, forge, crytic-compile/slither)
 *   solc [flags] --standard-json [file]  (JSON in on stdin or from file, JSON out on stdout)
 *
 * Import callback: resolves a source unit name against (in order) --base-path, each --include-path,
 * each --allow-paths entry, the cwd, node_modules of the cwd and its parents, and this repo's node_modules.
 * Remappings are applied by the compiler itself (settings.remappings) before the callback is called.
 * Unknown flags are ignored. Exit code is 0 whenever a JSON answer was written (like native solc, where
 * compile errors are reported inside the JSON).
 *
 * Install: `make setup` links this file as .venv/solcx/solc-v<version> (for SOLCX_BINARY_PATH) and
 * .venv/bin/solc (for forge, slither).
 */
'use strict';

const fs = require('fs');
const path = require('path');

const REPO_ROOT = path.resolve(__dirname, '..');

function loadSolc() {
  const candidates = [path.join(REPO_ROOT, 'node_modules', 'solc'), 'solc'];
  for (const c of candidates) {
    try {
      return require(c);
    } catch (e) {
      if (e && e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  process.stderr.write('solc-shim: cannot load the npm package "solc"; run `npm ci` (make setup)\n');
  process.exit(2);
}

// Flags that take a value (native solc spelling). Everything else is treated as a boolean flag.
const VALUE_FLAGS = new Set([
  '--base-path', '--include-path', '--allow-paths', '--evm-version', '--optimize-runs', '--output-dir',
  '-o', '--combined-json', '--libraries', '--revert-strings', '--debug-info', '--model-checker-engine',
  '--model-checker-targets', '--model-checker-timeout', '--model-checker-contracts', '--model-checker-solvers',
  '--model-checker-invariants', '--model-checker-ext-calls', '--model-checker-bmc-loop-iterations',
  '--yul-optimizations', '--optimize-yul-steps', '--stop-after', '--machine', '--yul-dialect',
  '--error-codes', '--eof-version', '--ignore-missing', '--import-asm-json',
]);

function parseArgs(argv) {
  const opts = { basePath: null, includePaths: [], allowPaths: [], positional: [], flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let val = null;
    if (a.startsWith('--') && a.includes('=')) {
      val = a.slice(a.indexOf('=') + 1);
      a = a.slice(0, a.indexOf('='));
    } else if (VALUE_FLAGS.has(a)) {
      val = i + 1 < argv.length ? argv[++i] : '';
    }
    if (a === '--base-path') opts.basePath = val;
    else if (a === '--include-path') opts.includePaths.push(val);
    else if (a === '--allow-paths') opts.allowPaths.push(...String(val).split(',').filter(Boolean));
    else if (a.startsWith('-') && a !== '-') opts.flags.add(a);
    else opts.positional.push(a); // source file, "-" (stdin) or a remapping "prefix=path"
  }
  return opts;
}

function versionString(solc) {
  // "0.8.28+commit.7893614a.Emscripten.clang" -> "0.8.28+commit.7893614a.Linux.g++" (native solc spelling)
  return solc.version().replace(/\.Emscripten\.clang$/, '.Linux.g++');
}

function readStdin() {
  const chunks = [];
  let fd = 0;
  const buf = Buffer.alloc(1 << 20);
  for (;;) {
    let n;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      if (e.code === 'EOF') break;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function makeImportCallback(opts) {
  const cwd = process.cwd();
  const bases = [];
  const add = (p) => {
    if (!p) return;
    const abs = path.resolve(cwd, p);
    if (!bases.includes(abs)) bases.push(abs);
  };
  add(opts.basePath);
  opts.includePaths.forEach(add);
  opts.allowPaths.forEach(add);
  add(cwd);
  // node_modules of the cwd and its parents, then of this repo.
  for (let d = cwd; ; d = path.dirname(d)) {
    add(path.join(d, 'node_modules'));
    if (path.dirname(d) === d) break;
  }
  add(path.join(REPO_ROOT, 'node_modules'));
  add(REPO_ROOT);

  return function importCallback(unitName) {
    const tried = [];
    const candidates = path.isAbsolute(unitName) ? [unitName] : bases.map((b) => path.join(b, unitName));
    // "node_modules/x/y.sol" may also be asked for relative to a base that already is a node_modules dir.
    if (!path.isAbsolute(unitName) && unitName.startsWith('node_modules/')) {
      const rest = unitName.slice('node_modules/'.length);
      bases.forEach((b) => candidates.push(path.join(b, rest)));
    }
    for (const c of candidates) {
      tried.push(c);
      try {
        if (fs.statSync(c).isFile()) return { contents: fs.readFileSync(c, 'utf8') };
      } catch (e) {
        /* try next */
      }
    }
    return { error: `File not found (solc-shim searched: ${tried.join(', ')})` };
  };
}

function writeAndExit(text, code) {
  process.exitCode = code;
  // Let Node flush the whole buffer before exiting (never call process.exit() after a big write).
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

function main() {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);

  if (opts.flags.has('--version') || opts.flags.has('-v')) {
    const solc = loadSolc();
    writeAndExit(`solc, the solidity compiler commandline interface\nVersion: ${versionString(solc)}\n`, 0);
    return;
  }
  if (opts.flags.has('--license')) {
    writeAndExit(loadSolc().license(), 0);
    return;
  }
  if (opts.flags.has('--help') || opts.flags.has('-h')) {
    writeAndExit(
      'solc-shim (solc-js backed). Supported: --version, --standard-json [file] (stdin otherwise), ' +
        '--base-path, --include-path, --allow-paths. Other flags are ignored.\n',
      0,
    );
    return;
  }
  if (!opts.flags.has('--standard-json')) {
    process.stderr.write(
      'solc-shim: only --standard-json (and --version) are supported; ' +
        'use crytic-compile/slither with --solc-standard-json.\n',
    );
    process.exitCode = 1;
    return;
  }

  const files = opts.positional.filter((p) => p !== '-' && !p.includes('='));
  const input = files.length ? fs.readFileSync(files[0], 'utf8') : readStdin();
  const solc = loadSolc();
  let output;
  try {
    output = solc.compile(input, { import: makeImportCallback(opts) });
  } catch (e) {
    output = JSON.stringify({
      errors: [
        {
          component: 'general',
          formattedMessage: `solc-shim: ${e && e.message}`,
          message: `solc-shim: ${e && e.message}`,
          severity: 'error',
          type: 'InternalCompilerError',
        },
      ],
    });
  }
  writeAndExit(output, 0);
}

main();
