// Sorting and filtering of the neuron table. A click on a column sorts by it, highest first; a
// second click reverses. "#sort=KEY" or "#sort=KEY-asc" in the address sorts on load.
const table = document.getElementById('neurons');
const body = table.tBodies[0];
const heads = Array.from(table.tHead.rows[0].cells);
const rows = Array.from(body.rows);
const value = (row, col) => parseFloat(row.cells[col].dataset.v);

function sortBy(col, descending) {
  rows.sort((a, b) => {
    const x = value(a, col), y = value(b, col);
    // Missing values go last either way; ties keep neuron order.
    if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y) || value(a, 0) - value(b, 0);
    return (descending ? y - x : x - y) || value(a, 0) - value(b, 0);
  });
  const fragment = document.createDocumentFragment();
  rows.forEach(row => fragment.appendChild(row));
  body.appendChild(fragment);
  heads.forEach(th => th.removeAttribute('aria-sort'));
  heads[col].setAttribute('aria-sort', descending ? 'descending' : 'ascending');
}

heads.forEach((th, col) => {
  if (!th.dataset.key) return;
  th.addEventListener('click', () => sortBy(col, th.getAttribute('aria-sort') !== 'descending'));
});

const filter = document.getElementById('filter');
const shown = document.getElementById('shown');
function applyFilter() {
  const text = filter.value.trim().toLowerCase();
  let count = 0;
  for (const row of rows) {
    const keep = !text || row.cells[0].textContent === text || row.textContent.toLowerCase().includes(text);
    row.hidden = !keep;
    count += keep;
  }
  shown.textContent = `${count} of ${rows.length} neurons`;
}
filter.addEventListener('input', applyFilter);

const wanted = /^#sort=([a-z_]+?)(-asc)?$/.exec(location.hash);
if (wanted) {
  const col = heads.findIndex(th => th.dataset.key === wanted[1]);
  if (col >= 0) sortBy(col, !wanted[2]);
}
applyFilter();
document.body.dataset.ready = 'yes';
