// Types of the twiml-guard Express middleware.
import type { GuardOptions } from "./index.js";

export type { GuardOptions as TwimlGuardOptions };

/** Connect/Express middleware applying the guard to the TwiML a route sends. */
export declare function twimlGuard(
  options?: GuardOptions,
): (req: unknown, res: unknown, next: (err?: unknown) => void) => void;
