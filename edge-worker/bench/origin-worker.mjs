// The trivial origin both benchmarked workers forward to (a service binding in the same workerd).
export default {
  fetch() {
    return new Response("ok\n");
  },
};
