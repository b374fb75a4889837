// Compiled (never run) by types.test.js: the package's declarations as a TypeScript user meets
// them. Each @ts-expect-error line must be an error, or tsc fails.
import { analyze, guardResponse, lint, rewrite, sniff } from "twiml-guard";
import type { Diagnostic, LintReport, RewriteResult, VerdictName } from "twiml-guard";
import { twimlGuard } from "twiml-guard/express";

const report: LintReport = lint("<Response/>");
const first: Diagnostic | undefined = report.diagnostics[0];
const code: string | undefined = first?.code;
const twilioError: number | null | undefined = first?.twilio_error;
const verdict: VerdictName = analyze(new Uint8Array([60])).verdict;
const fixed: RewriteResult = rewrite("<Response/>", { action: "start-recording", recordingStatusCallback: "https://a" });
const isTwiml: boolean = sniff("<html/>");
const guarded: Response = await guardResponse(new Response("<Response/>"), { mode: "strict", onOversize: "reject" });
// @ts-expect-error: guardResponse takes a Response, not a string
await guardResponse("<Response/>");
// @ts-expect-error: the reject styles are status and twiml
await guardResponse(guarded, { rejectStyle: "silent" });

// @ts-expect-error: the actions are strip and start-recording
rewrite("<Response/>", { action: "delete" });
// @ts-expect-error: TwiML is a string or bytes
lint(42);
// @ts-expect-error: severities are error and warning
const severity: "fatal" = report.diagnostics[0].severity;

const middleware = twimlGuard({ mode: "strict", onMalformed: "reject", maxBodyBytes: 1024 });
middleware({}, {}, (err?: unknown) => void err);
// @ts-expect-error: the modes are rewrite, strict and monitor
twimlGuard({ mode: "strcit" });

export { code, twilioError, verdict, fixed, isTwiml, severity, guarded };
