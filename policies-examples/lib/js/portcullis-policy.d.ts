// Types of the `portcullis:policy@0.4.0` world as componentize-js maps them, for
// editors and type checkers (`// @ts-check` + JSDoc, or TypeScript compiled to JS).
// Written from wit/policy.wit by hand: `jco types` / `jco guest-types` 1.35.0 fail
// here ("failed to read path for WIT", os error 44). Mapping rules: records are
// objects with camelCase keys; enums are kebab-case strings; variants are
// `{ tag, val }`; `option<T>` is `T | undefined`; `list<u8>` is `Uint8Array`; an
// exported `result<_, string>` returns for ok and throws the string for err.

export type PrincipalKind = 'person' | 'service' | 'agent';
export type AuthMethod = 'scram' | 'token' | 'certificate';
export type Access = 'read' | 'write' | 'ddl';
export type StatementKind =
  | 'select' | 'insert' | 'update' | 'delete' | 'merge' | 'copy'
  | 'create-table' | 'create-view' | 'create-index' | 'create-other' | 'alter' | 'drop' | 'truncate'
  | 'grant' | 'revoke' | 'begin' | 'commit' | 'rollback' | 'savepoint' | 'set' | 'show' | 'reset'
  | 'prepare' | 'execute' | 'deallocate' | 'explain' | 'declare' | 'fetch' | 'close'
  | 'listen' | 'notify' | 'unlisten' | 'call' | 'discard' | 'lock' | 'vacuum' | 'analyze'
  | 'comment' | 'do' | 'other' | 'unparsed';
export type CopyTarget = 'client' | 'server-file' | 'program';
export type Protocol = 'simple' | 'extended';
export type TransactionState = 'idle' | 'in-transaction' | 'failed';
export type ValueFormat = 'text' | 'binary';
export type DatePart = 'year' | 'month';
export type Hook = 'authorize' | 'mask' | 'approve';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Identity {
  user: string; groups: string[]; kind: PrincipalKind; authMethod: AuthMethod;
  actingFor?: string; clientAddr: string; applicationName: string;
}
export interface TableRef { schema?: string; name: string; access: Access }
export interface CopyInfo { to: boolean; target: CopyTarget }
export interface Statement {
  kind: StatementKind; leadingKeyword: string; fingerprint: string; sql: string;
  tables: TableRef[]; columns: string[]; functions: string[]; hasWhere?: boolean;
  copy?: CopyInfo; parseError?: string; multiStatement: boolean; index: number;
}
export type ParamValue = { tag: 'null' } | { tag: 'text'; val: string } | { tag: 'binary'; val: Uint8Array };
export interface Request {
  identity: Identity; database: string; statement: Statement; params?: ParamValue[];
  protocol: Protocol; transaction: TransactionState; sessionId: bigint;
}
export interface Denial { message: string; sqlstate?: string }
export interface ApprovalRequirement { reason: string; approvers: string[] }
export type Decision =
  | { tag: 'allow' }
  | { tag: 'deny'; val: Denial }
  | { tag: 'require-approval'; val: ApprovalRequirement };
export interface ColumnSource { schema: string; table: string; column: string }
export type Provenance =
  | { tag: 'direct'; val: ColumnSource }
  | { tag: 'derived'; val: ColumnSource[] }
  | { tag: 'constant' }
  | { tag: 'unknown'; val: TableRef[] };
export interface ResultColumn {
  index: number; name: string; typeOid: number; format: ValueFormat; provenance: Provenance;
}
export interface ResultContext {
  identity: Identity; database: string; statement?: Statement; columns: ResultColumn[];
}
export interface PartialMask { keepFirst: number; keepLast: number; fill: string }
export type MaskFunction =
  | { tag: 'redact'; val: string } | { tag: 'null' } | { tag: 'partial'; val: PartialMask }
  | { tag: 'email' } | { tag: 'pseudonym' } | { tag: 'digits'; val: number }
  | { tag: 'date'; val: DatePart } | { tag: 'round'; val: number } | { tag: 'custom' };
export interface ColumnMask { index: number; mask: MaskFunction }
export interface MaskPlan { columns: ColumnMask[]; refuse?: Denial }
export type Row = (string | undefined)[];
/** A packed batch of cells (contract 0.3.0): row-major, length -1 = NULL. */
export interface CellBatch { columns: number; data: Uint8Array; lengths: Int32Array | number[] }
export interface ApprovalRequest {
  id: string; request: Request; reason: string; approvers: string[]; requestedAtMs: bigint;
}
export interface ApprovalRouting {
  approvers: string[]; requiredApprovals: number; ttlSeconds: number; channel?: string;
}
export type ApprovalRoute =
  | { tag: 'route'; val: ApprovalRouting }
  | { tag: 'auto-approve'; val: string }
  | { tag: 'auto-reject'; val: string };
export interface Metadata { name: string; version: string; hooks: Hook[] }

/** The exports a policy module must provide. */
export interface PolicyExports {
  metadata(): Metadata;
  /** Throw a string to reject the settings. */
  configure(settings: string): void;
  authorize(req: Request): Decision;
  planMasks(ctx: ResultContext): MaskPlan;
  /** Throw a string to fail the result. */
  maskRows(ctx: ResultContext, rows: Row[]): Row[];
  /** Contract 0.3.0; `maskCellsViaRows(maskRows, ctx, batch)` adapts `maskRows`. */
  maskCells(ctx: ResultContext, batch: CellBatch): CellBatch;
  approveHook(req: ApprovalRequest): ApprovalRoute;
}

/** The world's import: `import log from 'log'`. */
export type Log = (level: LogLevel, message: string) => void;

// ./portcullis-policy.js
export function allow(): Decision;
export function deny(message: string, sqlstate?: string): Decision;
export function requireApproval(reason: string, approvers: Iterable<string>): Decision;
export function route(approvers: Iterable<string>,
  opts?: { approvals?: number; ttlSeconds?: number; channel?: string }): ApprovalRoute;
export function inAnyGroup(identity: Identity, groups: string[]): boolean;
export function isAgent(identity: Identity): boolean;
/** The groups of the person the identity acts for (contract 0.2.0 `context` import). */
export function actingForGroups(identity: Identity): string[];
export class SettingsError extends Error {}
export function parseSettings(text: string, known: string[]): Record<string, unknown>;
export function stringList(settings: Record<string, unknown>, key: string, fallback: string[]): string[];
/** Answers `maskCells` with a `maskRows` function (unpack, mask, pack). */
export function maskCellsViaRows(maskRows: (ctx: ResultContext, rows: Row[]) => Row[],
  ctx: ResultContext, batch: CellBatch): CellBatch;

/** The request from `authorize-json`'s JSON (contract 0.4.0; used by portcullis-entry.js). */
export function requestFromJson(text: string): Request;
/** A decision as `authorize-json`'s UTF-8 JSON answer (used by portcullis-entry.js). */
export function decisionToJson(decision: Decision): Uint8Array;
