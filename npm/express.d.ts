// Types of the twiml-guard Express middleware.
import type { RewriteAction } from "./index.js";

export type Mode = "rewrite" | "strict" | "monitor";

export interface TwimlGuardOptions {
  /** Default `rewrite`. */
  mode?: Mode;
  /** rewrite mode: default `strip`. */
  action?: RewriteAction;
  /** start-recording: the recordingStatusCallback to add when the <Record> had none. */
  recordingStatusCallback?: string;
  /** A body that is not well-formed XML: forward it (default) or reject it. */
  onMalformed?: "pass" | "reject";
  /** Status of a rejection; default 502. */
  rejectStatus?: number;
  /** Largest body judged; larger ones pass with `x-twiml-guard: oversize`. Default 262144. */
  maxBodyBytes?: number;
  /** Media types judged; default text/xml, application/xml, text/html (sniffed). */
  contentTypes?: string[];
}

/** Connect/Express middleware applying the guard to the TwiML a route sends. */
export declare function twimlGuard(
  options?: TwimlGuardOptions,
): (req: unknown, res: unknown, next: (err?: unknown) => void) => void;
