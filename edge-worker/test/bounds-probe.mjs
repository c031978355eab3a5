// A probe worker for bounds.test.mjs: drives the edgegate worker (service binding GATE) through
// the non-HTTP entry points a service binding can reach: connect(), scheduled() and queue().
export default {
  async fetch(request, env) {
    const what = new URL(request.url).pathname;
    try {
      if (what === "/connect") {
        const socket = env.GATE.connect("origin.invalid:80");
        const dec = new TextDecoder();
        let text = "";
        for await (const chunk of socket.readable) text += dec.decode(chunk, { stream: true });
        return Response.json({ text: text + dec.decode() });
      }
      if (what === "/scheduled") {
        const r = await env.GATE.scheduled({ cron: "* * * * *" });
        return Response.json({ outcome: r.outcome });
      }
      if (what === "/queue") {
        const r = await env.GATE.queue("edgegate-probe", [
          { id: "m1", timestamp: new Date(), body: "hello", attempts: 1 },
        ]);
        return Response.json({ outcome: r.outcome });
      }
    } catch (e) {
      return Response.json({ error: String(e?.message ?? e) }, { status: 500 });
    }
    return new Response("probe", { status: 404 });
  },
};
