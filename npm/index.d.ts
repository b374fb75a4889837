// Types of the twiml-guard package; the JSON shapes are documented in docs/lint.md.

export type Severity = "error" | "warning";
export type VerdictName = "clean" | "conflict" | "not_twiml" | "malformed";
export type RewriteAction = "strip" | "start-recording";

export interface Diagnostic {
  /** Stable rule code, `TG001` .. `TG008`. */
  code: string;
  /** Stable rule name, e.g. `record-blocks-stream`. */
  name: string;
  severity: Severity;
  message: string;
  /** How to fix it. */
  help: string;
  /** Byte offsets of the span in the UTF-8 document (end exclusive). */
  start: number;
  end: number;
  /** 1-based line and byte column of `start` and of `end`. */
  line: number;
  column: number;
  end_line: number;
  end_column: number;
  /** The Twilio error code the mistake produces, where Twilio documents one. */
  twilio_error: number | null;
}

export interface LintReport {
  /** Exactly the edge filter's verdict for the same bytes. */
  verdict: VerdictName;
  errors: number;
  warnings: number;
  diagnostics: Diagnostic[];
}

export interface ConflictSpot {
  line: number;
  column: number;
  start: number;
  end: number;
}

export interface Analysis {
  verdict: VerdictName;
  /** Each blocking <Record> (empty unless `conflict`). */
  conflicts: ConflictSpot[];
  malformed: { line: number; column: number; offset: number; reason: string } | null;
  /** One line, as the filter logs it. */
  description: string;
}

export interface RewriteOptions {
  /** Default `strip`. */
  action?: RewriteAction;
  /** start-recording: the recordingStatusCallback to add when the <Record> had none. */
  recordingStatusCallback?: string;
}

export interface RewriteResult {
  verdict: VerdictName;
  action: RewriteAction;
  /** False when the document was not a conflict: `twiml` is then the input. */
  changed: boolean;
  twiml: string;
}

export interface Core {
  lint(xml: string | Uint8Array): LintReport;
  analyze(xml: string | Uint8Array): Analysis;
  rewrite(xml: string | Uint8Array, options?: RewriteOptions): RewriteResult;
  sniff(xml: string | Uint8Array): boolean;
}

export declare function lint(xml: string | Uint8Array): LintReport;
export declare function analyze(xml: string | Uint8Array): Analysis;
export declare function rewrite(xml: string | Uint8Array, options?: RewriteOptions): RewriteResult;
export declare function sniff(xml: string | Uint8Array): boolean;
/** Load another copy of the core, from bytes or a URL (file: in Node, fetched elsewhere). */
export declare function loadCore(source: URL | string | Uint8Array | ArrayBuffer): Promise<Core>;
