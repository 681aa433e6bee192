// The prepare script: installs this package's own dependencies (koffi) when they are
// missing, for `npm install /path/to/bindings/node` in another project.
//
// npm 11 installs a directory as a symlink (node_modules/weft -> bindings/node, unless
// --install-links) and runs the link's prepare script, but does not install the link's
// dependencies: they are the linked directory's own. Node resolves require('koffi') from
// the link's real path, bindings/node/lib/, so without bindings/node/node_modules it
// throws "Cannot find module 'koffi'". After npm ci here (make test runs it) koffi is
// found and this does nothing.
'use strict';

const { execFileSync } = require('node:child_process');
const path = require('node:path');

const PACKAGE_DIR = path.resolve(__dirname, '..');

// npm hands its settings to scripts as npm_config_* variables, among them the consuming
// project's local_prefix, which would make the inner npm install there. Only the
// settings that say where packages come from are passed on.
const PASSED_ON = /^npm_config_(registry|cache|userconfig|globalconfig|cafile|ca|proxy|https_proxy|noproxy|strict_ssl|offline|prefer_offline)$/i;

try {
  require.resolve('koffi', { paths: [PACKAGE_DIR] });
} catch {
  console.error(`weft: installing koffi into ${path.join(PACKAGE_DIR, 'node_modules')} (npm ci)`);
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([name]) => !/^npm_/i.test(name) || PASSED_ON.test(name)));
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  execFileSync(npm[0], [...npm.slice(1), 'ci', '--omit=dev', '--no-audit', '--no-fund', '--loglevel=error'],
    { cwd: PACKAGE_DIR, env, stdio: ['ignore', 2, 2] });
}
