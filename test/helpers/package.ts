import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { cp, mkdir, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir } from './peers.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))

/**
 * The package as `npm pack` ships it (package.json, `dist/src` compiled
 * here, `src`), in a temporary directory, installed into an empty app's
 * `node_modules` (its own dependencies by a link to this repository's).
 * Nothing is written into the working tree.
 */
export async function installedPackage (): Promise<{ tmp: string, pkg: string, app: string }> {
  const tmp = await tempDir()
  const pkg = join(tmp, 'new-piece-please')
  await mkdir(pkg)
  await promisify(execFile)(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: root })
  await cp(join(root, 'package.json'), join(pkg, 'package.json'))
  await cp(join(root, 'src'), join(pkg, 'src'), { recursive: true })
  await symlink(join(root, 'node_modules'), join(pkg, 'node_modules'), 'dir')
  const app = join(tmp, 'app')
  await mkdir(join(app, 'node_modules'), { recursive: true })
  await symlink(pkg, join(app, 'node_modules', 'new-piece-please'), 'dir')
  return { tmp, pkg, app }
}
