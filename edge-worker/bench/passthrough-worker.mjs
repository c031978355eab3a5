// The floor for bench.sh: forwards every request to the origin without looking at it.
export default {
  fetch(request, env) {
    return env.ORIGIN.fetch(request);
  },
};
