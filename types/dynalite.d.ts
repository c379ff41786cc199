/** dynalite (a DynamoDB API on LevelDB, used by tests) ships no types: the part the tests use. */
declare module 'dynalite' {
  import type { Server } from 'node:http';
  interface DynaliteOptions {
    /** Milliseconds a CreateTable takes to become ACTIVE. */
    readonly createTableMs?: number;
    readonly deleteTableMs?: number;
    readonly updateTableMs?: number;
    /** A directory for LevelDB; in memory without it. */
    readonly path?: string;
  }
  export default function dynalite(options?: DynaliteOptions): Server;
}
