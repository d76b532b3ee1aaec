// Polls the ingest job whose progress address the bar's data-progress holds, until it ends.
(function () {
  var bar = document.getElementById('bar');
  if (!bar || !bar.dataset.progress) return;
  function gated(summary) {
    var low = (summary && summary.low_quality) || {}; var parts = [];
    for (var reason in low) parts.push(low[reason] + (reason === 'too_small' ? ' too small' : ' below the detector score'));
    return parts.length ? '; faces not indexed by the quality gate: ' + parts.join(', ') : '';
  }
  (function poll() { fetch(bar.dataset.progress).then(r => r.json()).then(function (job) {
    bar.max = job.total || 1; bar.value = job.done;
    document.getElementById('status').textContent = job.status + ': ' + job.done + ' of ' + (job.total || '?') +
      ' photos, ' + job.faces + ' faces' + (job.error ? ' — ' + job.error.message : '') + gated(job.summary);
    if (job.status === 'queued' || job.status === 'running') setTimeout(poll, 500); }); })();
})();
