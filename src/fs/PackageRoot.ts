/**
 * The folder stageline is installed in, where package.json, sql/, skills/, domains/ and examples/ live. The
 * engine runs from its sources (src/fs/ is two levels down) or compiled (dist/src/fs/, three): files it
 * reads at run time are found from here, not from the module's own location.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const sources = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

export const packageRoot = path.basename(sources) === "dist" ? path.dirname(sources) : sources

/** A path inside the installed package. */
export const inPackage = (...segments: ReadonlyArray<string>) => path.join(packageRoot, ...segments)
