/**
 * Small repositories for the analysis-worker to analyse, written under the stack's fixtures dir (the worker's
 * allowed root). Python only, with classes, methods, imports and calls, so every kind of node appears.
 */
import fs from 'node:fs';
import path from 'node:path';

function moduleSource(i: number, files: number): string {
  const other = (i + 1) % files;
  const lines = [
    `"""Module ${i} of a generated fixture repository."""`,
    `from pkg.mod_${other} import helper_${other}`,
    '',
    `class Service${i}:`,
    `    """A service with a few methods."""`,
    '',
    '    def __init__(self):',
    '        self.count = 0',
    '',
  ];
  for (let m = 0; m < 4; m++) {
    lines.push(`    def step_${m}(self, value):`, `        self.count += value`, `        return helper_${other}(value + ${m})`, '');
  }
  lines.push(`def helper_${i}(value):`, '    return value * 2', '');
  for (let f = 0; f < 3; f++) {
    lines.push(`def task_${i}_${f}(items):`, `    return [Service${i}().step_${f}(x) for x in items]`, '');
  }
  return lines.join('\n');
}

/** Writes `files` Python modules under `<root>/<name>/pkg/` and returns the repository's path. */
export function writeFixtureRepo(root: string, name: string, files: number): string {
  const repo = path.join(root, name);
  const pkg = path.join(repo, 'pkg');
  fs.mkdirSync(pkg, { recursive: true });
  fs.writeFileSync(path.join(pkg, '__init__.py'), '');
  for (let i = 0; i < files; i++) fs.writeFileSync(path.join(pkg, `mod_${i}.py`), moduleSource(i, files));
  return repo;
}
