// Migrate a JavaScript derivation's per-key state written by its earlier versions:
//
//   import { exportMigration } from './flow_migrate.js';
//
//   export const migrate = exportMigration((fromDigest, key, state) => {
//     return { sum: state.total, count: state.orders };   // or undefined: keep it as it is
//   });
//
// beside `export const derive = exportDerivation(...)`, built on world
// flow:plugin/migrating-derivation of wit/flow.wit (the project's package.json names it in
// its build script). When a task switches to this version from another component that last
// wrote its state, the host calls the function for each key before the first transaction
// (`fromDigest`: `sha256:...` of that component; `key` and `state` parsed); the results commit
// atomically (all keys or none). The same shape as the Rust SDK's `Migrate`.

import { failure, json } from './flow_base.js';

/** The `migrate` export of `migrate(fromDigest, key, state)`, which returns the key's new
 * state or undefined to keep it. */
export function exportMigration(migrate) {
  return {
    migrate(fromDigest, batch) {
      const out = [];
      batch.forEach((s, i) => {
        let next;
        try {
          next = migrate(fromDigest, JSON.parse(s.key), JSON.parse(s.state));
        } catch (e) {
          throw failure(e, i);
        }
        if (next !== undefined) out.push({ key: s.key, state: json(next, 'a migrated state') });
      });
      return out;
    },
  };
}
