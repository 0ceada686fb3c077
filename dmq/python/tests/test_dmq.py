"""The dmq Python module, as the original document shows it, plus the fixed behaviours."""
import os
import sys
import tempfile
import threading
import time
import unittest

import dmq


class DmqTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.base = os.path.join(self.dir.name, "q")

    def tearDown(self):
        self.dir.cleanup()

    def test_document_example(self):
        q1 = dmq.DMQ(self.base, dmq.MODE_NEWLINES)
        self.assertEqual(q1.send("foo"), 4)
        self.assertEqual(q1.send(b"bar"), 4)
        q2 = dmq.DMQ(self.base)  # whatever framing was specified initially
        self.assertEqual(q2.receive(nowait=True), b"foo")
        self.assertEqual(list(q2.receive_iter(nowait=True)), [b"bar"])
        for _ in range(5):  # the original crashed on the second empty receive
            self.assertIsNone(q2.receive(nowait=True))
        for f in ("q0", "q1", "qmap"):
            self.assertTrue(os.path.exists(self.base[:-1] + f))
        self.assertEqual(os.path.getsize(self.base + "map"), 12320)

    def test_frames_carry_binary_and_the_mode_sticks(self):
        q = dmq.DMQ(self.base, dmq.MODE_FRAMES)
        payloads = [b"", b"\x00\n\xff" * 100, bytes(range(256)), b"x" * 60000]
        for p in payloads:
            q.send(p)
        r = dmq.DMQ(self.base, dmq.MODE_NEWLINES)  # ignored: the queue exists
        self.assertEqual([r.receive(nowait=True) for _ in payloads], payloads)

    def test_errors_raise(self):
        q = dmq.DMQ(self.base, dmq.MODE_NEWLINES)
        with self.assertRaises(dmq.Error) as e:
            q.send(b"two\nlines")
        self.assertIn("delimiter", str(e.exception))
        with self.assertRaises(dmq.Error):
            q.send(b"x" * 70000)
        with self.assertRaises(dmq.Error):
            dmq.DMQ(self.base, 9)
        q.receive(nowait=True)
        with self.assertRaises(dmq.Error) as e:
            dmq.DMQ(self.base).receive(nowait=True)  # one reader per queue
        self.assertIn("another reader", str(e.exception))
        with open(self.base + "map", "r+b") as f:
            f.truncate(100)
        with self.assertRaises(dmq.Error) as e:
            dmq.DMQ(self.base)
        self.assertIn("corrupt map", str(e.exception))

    def test_blocking_receive_wakes_on_a_send_from_another_thread(self):
        q = dmq.DMQ(self.base)
        w = dmq.DMQ(self.base)

        def later():
            time.sleep(0.2)
            w.send(b"wake up")

        t = threading.Thread(target=later)
        t.start()
        self.assertEqual(q.receive(), b"wake up")  # GIL released while waiting
        t.join()
        it = q.receive_iter()
        w.send(b"one")
        w.send(b"two")
        self.assertEqual([next(it), next(it)], [b"one", b"two"])

    def test_info_and_clean(self):
        q = dmq.DMQ(self.base, dmq.MODE_NULLS)
        q.send(b"a")
        text = q.info()
        self.assertIn("iofs.log.readtarget = 0", text)
        self.assertIn("iofs.log.logfile0 = " + os.path.abspath(self.base) + "0", text)
        q.flush()
        q.clean()
        self.assertFalse(os.path.exists(self.base + "map"))
        with self.assertRaises(dmq.Error):
            q.send(b"after clean")
        self.assertEqual((dmq.MODE_NULLS, dmq.MODE_NEWLINES, dmq.MODE_FRAMES, dmq.MODE_RAW), (0, 1, 2, 3))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun == 5 else 1)
