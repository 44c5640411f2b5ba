// The types of flow_migrate.js, for TypeScript derivations that migrate their state.
// `exportMigration` returns the `migrate` export `jco types` describes from wit/flow.wit when
// the project builds on world migrating-derivation.

export function exportMigration<Old = any, New = any>(
  migrate: (fromDigest: string, key: unknown[], state: Old) => New | undefined,
): typeof import('./types/interfaces/flow-plugin-migrate.js');
