export interface Engine {
  readonly compiled: boolean
  /** The folder main.js or main.ts is run from. */
  readonly dir: string
}

export declare const compiledIsCurrent: () => boolean
export declare const runningEngine: () => Engine | null
export declare const start: () => Promise<void>
export declare const embeddedModule: (name: string) => string
