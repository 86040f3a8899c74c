"""The package layout of DESIGN.md, held by walking every module's imports (top level and inside functions):

  * only `ticketing.store` imports psycopg, and only it writes SQL;
  * `model`, `statuses`, `routing`, `threads`, `drafts` and `formats` import neither the store nor psycopg;
  * `intake`, `mail`, `outbox` and `operations` never import `cli` or `api`; `cli` and `api` never each other;
  * `ingest` and `outbound` never import `ticketing`, nor each other;
  * no function in `ticketing` is 40 lines or longer.
Each rule is also run against a small tree that breaks it, so that a rule that can no longer fail is noticed.
"""
from __future__ import annotations

import ast
import pathlib
import re
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PURE = ('ticketing.model', 'ticketing.statuses', 'ticketing.routing', 'ticketing.threads', 'ticketing.drafts',
        'ticketing.formats')
WORKERS = ('ticketing.intake', 'ticketing.mail', 'ticketing.outbox', 'ticketing.operations')
FRONT_ENDS = ('ticketing.cli', 'ticketing.api')
SQL = re.compile(r'\b(?:SELECT\s.+\sFROM|INSERT INTO|UPDATE\s+\w+\s+SET|DELETE FROM|COPY\s+\w+\s+\(|'
                 r'CREATE (?:TABLE|INDEX)|pg_notify\(|nextval\()', re.S)
MAX_FUNCTION_LINES = 40


@dataclass(frozen=True)
class Module:
    name: str
    path: pathlib.Path
    tree: ast.Module


def module_name(root: pathlib.Path, path: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def load_modules(root: pathlib.Path, packages=('ingest', 'outbound', 'ticketing')) -> list[Module]:
    found = []
    for package in packages:
        for path in sorted((root / package).rglob('*.py')):
            found.append(Module(module_name(root, path), path, ast.parse(path.read_text(encoding='utf-8'))))
    return found


def imported(module: Module) -> set[str]:
    """Every module name this one imports, relative imports resolved, anywhere in its code."""
    names = set()
    package = module.name.split('.') if module.path.name == '__init__.py' else module.name.split('.')[:-1]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = '.'.join(base + ([node.module] if node.module else []))
            names.add(target)
            names.update('%s.%s' % (target, alias.name) for alias in node.names)
    return names


def within(name: str, prefixes) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def import_violations(modules: list[Module]) -> list[str]:
    """One line per module and broken rule."""
    found = {}
    for module in modules:
        for target in sorted(imported(module)):
            reason = forbidden(module.name, target)
            if reason:
                found.setdefault((module.name, reason), '%s imports %s: %s' % (module.name, target, reason))
    return sorted(found.values())


def forbidden(source: str, target: str) -> str | None:
    if within(target, 'psycopg') and not within(source, 'ticketing.store'):
        return 'only ticketing.store imports psycopg'
    if within(source, PURE) and within(target, 'ticketing.store'):
        return 'model, statuses, routing, threads, drafts and formats do not use the store'
    if within(source, WORKERS) and within(target, FRONT_ENDS):
        return 'intake, mail, outbox and operations do not import the front ends'
    if within(source, 'ticketing.cli') and within(target, 'ticketing.api') or \
            within(source, 'ticketing.api') and within(target, 'ticketing.cli'):
        return 'cli and api do not import each other'
    if within(source, ('ingest', 'outbound')) and within(target, 'ticketing'):
        return 'ingest and outbound do not import ticketing'
    if within(source, 'ingest') and within(target, 'outbound') or \
            within(source, 'outbound') and within(target, 'ingest'):
        return 'ingest and outbound do not import each other'
    return None


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring constants of a module, its classes and functions (prose, not code)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def sql_outside_store(modules: list[Module]) -> list[str]:
    found = []
    for module in modules:
        if not within(module.name, 'ticketing') or within(module.name, 'ticketing.store'):
            continue
        prose = docstrings(module.tree)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose \
                    and SQL.search(node.value):
                found.append('%s line %d: %r' % (module.name, node.lineno, node.value[:60]))
    return found


def long_functions(modules: list[Module]) -> list[str]:
    found = []
    for module in modules:
        if not within(module.name, 'ticketing'):
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length >= MAX_FUNCTION_LINES:
                    found.append('%s.%s: %d lines' % (module.name, node.name, length))
    return found


# ------------------------------------------------------------------------------------ the project's own code

@pytest.fixture(scope='module')
def modules() -> list[Module]:
    return load_modules(ROOT)


def test_packages_import_only_what_the_layout_allows(modules):
    assert import_violations(modules) == []


def test_no_sql_outside_the_store(modules):
    assert sql_outside_store(modules) == []


def test_no_function_in_ticketing_reaches_forty_lines(modules):
    assert long_functions(modules) == []


def test_every_package_is_walked(modules):
    names = {m.name for m in modules}
    for expected in ('ticketing.store.db', 'ticketing.intake.runner', 'ticketing.mail.listener',
                     'ticketing.outbox.worker', 'ticketing.operations.replies', 'ticketing.formats.superoffice',
                     'ticketing.cli', 'ingest.parse', 'outbound.compose'):
        assert expected in names


# ------------------------------------------------------------------------------- the rules can still fail

def write_tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize('name, text, expected', [
    ('ticketing/intake/plan.py', 'import psycopg\n', 'only ticketing.store imports psycopg'),
    ('ticketing/routing.py', 'from .store import mailboxes\n', 'do not use the store'),
    ('ticketing/formats/superoffice.py', 'from ..store.tickets import ticket_record\n', 'do not use the store'),
    ('ticketing/mail/worker.py', 'def f():\n    from ..cli import command\n', 'do not import the front ends'),
    ('ticketing/cli/tickets.py', 'from ..api import app\n', 'cli and api do not import each other'),
    ('outbound/compose.py', 'from ingest.sanitize import sanitize_html\n', 'do not import each other'),
    ('ingest/parse.py', 'from ticketing import model\n', 'do not import ticketing'),
])
def test_a_forbidden_import_is_reported(tmp_path, name, text, expected):
    write_tree(tmp_path, {'ingest/__init__.py': '', 'outbound/__init__.py': '', 'ticketing/__init__.py': '',
                          name: text})
    violations = import_violations(load_modules(tmp_path))
    assert len(violations) == 1 and expected in violations[0]


def test_sql_and_long_functions_outside_the_rules_are_reported(tmp_path):
    body = '\n'.join('    x = %d' % i for i in range(MAX_FUNCTION_LINES))
    write_tree(tmp_path, {'ingest/__init__.py': '', 'outbound/__init__.py': '',
                          'ticketing/__init__.py': '',
                          'ticketing/operations/replies.py': 'Q = "SELECT a FROM ticket WHERE b = %s"\n',
                          'ticketing/store/tickets.py': 'Q = "SELECT a FROM ticket"\n',
                          'ticketing/cli/long.py': 'def long():\n' + body + '\n'})
    modules = load_modules(tmp_path)
    assert [v.split(' line')[0] for v in sql_outside_store(modules)] == ['ticketing.operations.replies']
    assert long_functions(modules) == ['ticketing.cli.long.long: %d lines' % (MAX_FUNCTION_LINES + 1)]
