// Run by test/runtimes.test.js in workerd (kept out of test/, whose every file node --test runs):
// a Worker answering with the TwiML it is sent, guarded in the mode its path names, or that
// TwiML's lint report on /lint.
import { guardResponse, lint } from "../workerd.js";

export default {
  async fetch(request) {
    const twiml = await request.text();
    const mode = new URL(request.url).pathname.slice(1);
    if (mode === "lint") return Response.json(lint(twiml));
    return guardResponse(new Response(twiml, { headers: { "content-type": "text/xml" } }), { mode });
  },
};
