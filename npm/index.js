// twiml-guard for Node's import: the same core as require() gets (index.cjs), plus guardResponse.
import core from "./index.cjs";
import { makeGuardResponse } from "./guard-response.js";

export const { lint, analyze, rewrite, sniff, Guard } = core;
export const guardResponse = makeGuardResponse(Guard);
