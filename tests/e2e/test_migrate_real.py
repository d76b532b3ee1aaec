"""`vultus migrate` on real faces: a gallery moved into another SQLite file and FAISS folder searches the same.

The five identities of the shared faces with the most photos are ingested, one photo erased and one person objected to;
after the move, the leave-one-out search over them gives the same candidates, in the same order
and with the same similarities, on the target as on the deployment, and the receipts verify.
"""

from __future__ import annotations

from pathlib import Path

import vultus
from vultus.evaluation import identity_photos, leave_one_out

IDENTITIES = 5


def test_a_real_gallery_moved_elsewhere_gives_the_same_searches(tmp_path: Path, faces_root: Path):
    root = tmp_path / "faces"
    root.mkdir()
    every = identity_photos(faces_root)
    for name in sorted(every, key=lambda name: (-len(every[name]), name))[:IDENTITIES]:
        (root / name).symlink_to(faces_root / name)
    photos = identity_photos(root)
    data = tmp_path / "data"
    target = tmp_path / "target"
    target.mkdir()
    store_url, index_url = f"sqlite:///{target / 'moved.db'}", f"faiss://{target / 'index'}"
    probe = next(iter(photos.values()))[0]
    with vultus.open(data, actor="e2e") as engine:
        engine.add_source("identities", basis="legitimate-interests", purpose="testing", retention="30d")
        engine.ingest([root / name for name in photos], source="identities", workers=2)
        engine.erase(engine.match_person(list(photos.values())[-1][0]))
        before = leave_one_out(engine, root, source="identities")
        searched = engine.search(probe, purpose="e2e", case="MIG-1", top=20, threshold=0.0)
        report = engine.migrate(to_store=store_url, to_index=index_url)
        assert report.ok, [c for c in report.checks if not c.ok]
        assert report.index_vectors == engine.stats().index_vectors > 0
        receipts = [engine.receipt(r.id) for r in engine.receipts()]
    with vultus.open(data, actor="e2e", store={"url": store_url}, index={"url": index_url}) as moved:
        after = leave_one_out(moved, root, source="identities")
        again = moved.search(probe, purpose="e2e", case="MIG-2", top=20, threshold=0.0)
        assert [(c.face_id, round(c.similarity, 5)) for c in again.candidates] == \
            [(c.face_id, round(c.similarity, 5)) for c in searched.candidates]
        assert (after.rank1_hits, after.probes, after.recall_at_k, after.misses) == \
            (before.rank1_hits, before.probes, before.recall_at_k, before.misses)
        assert after.probes > 10 and after.rank1_hits > 0
        assert receipts and all(moved.check_receipt(r) == "a valid signature by this deployment's key" for r in receipts)
        assert moved.verify_audit().ok and moved.audit_entries()[-1].action != "deployment.migrate"  # searches since
        assert [e.action for e in moved.audit_entries(action="deployment.migrate")] == ["deployment.migrate"]
