// Lets a photo be dropped on a .drop zone: the files go to the input its data-input names.
document.querySelectorAll('.drop').forEach(function (zone) {
  var input = document.getElementById(zone.dataset.input);
  ['dragenter','dragover'].forEach(function (e) { zone.addEventListener(e, function (ev) {
    ev.preventDefault(); zone.classList.add('over'); }); });
  ['dragleave','drop'].forEach(function (e) { zone.addEventListener(e, function (ev) {
    ev.preventDefault(); zone.classList.remove('over'); }); });
  zone.addEventListener('drop', function (ev) { input.files = ev.dataTransfer.files;
    zone.querySelector('span').textContent = input.files.length + ' file(s) chosen'; });
});
