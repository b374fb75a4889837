//! The writer on real files and on a stand-in disk that stalls until the test lets it go.

use super::*;
use std::io::Cursor;
use std::sync::Condvar;

#[tokio::test]
async fn writes_off_the_socket_and_reports_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("r.wav");
    let w = RecordingWriter::create(path.clone(), RecorderLimits::default());
    w.inbound(0, &[0xFF; 160]).unwrap();
    w.inbound(40, &[0x00; 160]).unwrap();
    let summary = w.finish().await.unwrap();
    assert_eq!(summary.frames, 480);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 480 * 4);
}

#[tokio::test]
async fn a_long_recording_goes_out_in_batches_and_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("r.wav");
    let w = RecordingWriter::create(path.clone(), RecorderLimits::default());
    // 8 s of caller audio at once (under the queue's bound), each frame its own value, and one
    // agent frame.
    for i in 0..400u64 {
        w.inbound(i * 20, &[(i % 256) as u8; 160]).unwrap();
    }
    w.outbound(&[0x00; 160]).unwrap();
    let summary = w.finish().await.unwrap();
    assert_eq!(summary.frames, 400 * 160 + 160);
    let bytes = std::fs::read(&path).unwrap();
    let pcm = media::wav::decode(&bytes).unwrap();
    for i in [0usize, 1, 255, 256, 399] {
        let want = f32::from(media::mulaw::decode_sample((i % 256) as u8)) / 32768.0;
        assert_eq!(pcm.channels[0][i * 160], want, "frame {i}");
        assert_eq!(pcm.channels[0][i * 160 + 159], want, "frame {i}");
    }
    let agent = f32::from(media::mulaw::decode_sample(0x00)) / 32768.0;
    assert_eq!(pcm.channels[1][400 * 160], agent);
}

#[tokio::test]
async fn a_file_that_cannot_be_created_fails_the_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let w = RecordingWriter::create(tmp.path().join("no/such/dir.wav"), Default::default());
    let err = w.finish().await.unwrap_err();
    assert_eq!(err.reason, "io_error");
    assert!(err.message.contains("No such file or directory"), "{err}");
}

/// A disk whose writes wait until the test opens the gate.
struct Stalled {
    data: Cursor<Vec<u8>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Read for Stalled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl Seek for Stalled {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.data.seek(pos)
    }
}

impl Write for Stalled {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (open, cv) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.data.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for Stalled {
    fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_stalled_disk_never_holds_the_socket_and_past_the_queue_the_recording_fails() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let disk = Arc::clone(&gate);
    let w = RecordingWriter::with_storage(
        move || {
            Ok(Box::new(Stalled {
                data: Cursor::new(Vec::new()),
                gate: disk,
            }) as Box<dyn Storage>)
        },
        RecorderLimits::default(),
    );
    // The header write stalls the first job; every frame up to the bound is still taken at once.
    let fits = MAX_QUEUED_BYTES / 160;
    for i in 0..fits as u64 {
        w.inbound(i * 20, &[0xFF; 160]).unwrap();
    }
    let err = w.inbound(fits as u64 * 20, &[0xFF; 160]).unwrap_err();
    assert_eq!(err, Failure::backlog());
    assert_eq!(err.reason, "disk_too_slow");
    assert_eq!(err.message, "the disk fell 10 s behind the call");
    // Refused from then on, and the end answers without waiting for the stalled write.
    assert_eq!(w.outbound(&[0x00; 160]), Err(Failure::backlog()));
    assert_eq!(w.finish().await, Err(Failure::backlog()));
    let (open, cv) = &*gate;
    *open.lock().unwrap() = true;
    cv.notify_all();
}
