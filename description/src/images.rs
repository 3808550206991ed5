//! The image rules: each partition's program, checked against its partition and
//! board by [`load_images`] and flattened into the bytes the kernel loads. They run
//! on a validated [`System`], since they need the programs, which the description
//! rules do not read; `septum check` runs both, so `septum image` never meets an
//! image that `check` would refuse. Each error points at the partition's `image`
//! or `path` value:
//!
//! | rule | what it forbids |
//! |---|---|
//! | `image-file` | a program that cannot be read, or is not a regular file (a device such as `/dev/zero`, a pipe, a folder) |
//! | `image-elf` | a file that is not a 64-bit little-endian executable ELF (`ET_EXEC`) with at least one loadable segment, each segment's bytes inside the file and no more of them in the file than in memory |
//! | `image-arch` | an ELF for an architecture other than the board's |
//! | `image-segment` | a loadable segment, its zero-filled part included, outside the RAM the partition always keeps (from [`RAM_BASE`]: all its RAM, or its `memory.min` if it balloons: a `balloon` capability or a virtio balloon), or overlapping another segment |
//! | `image-entry` | an entry point outside the bytes every loadable segment takes from the file, or not 4-byte aligned |
//!
//! A Linux partition's image is its kernel, device tree and initrd, laid out
//! and checked by [`crate::linux`] (rules `image-file`, `linux-image`,
//! `linux-fit`).
//!
//! Memory stays bounded by the partition's RAM: only the ELF's headers and its
//! segments' bytes are read, and the bytes only once every segment is known to lie
//! inside that RAM (at most [`RAM_MAX`](crate::limits::RAM_MAX)).

use std::path::{Path, PathBuf};

use crate::elf::{self, ET_EXEC, ElfError, Header};
use crate::limits::RAM_BASE;
use crate::linux::{self, LinuxParts};
use crate::{
    Board, DescriptionError, DescriptionErrors, ImageSource, Partition, System, open_regular,
};

/// A partition's program as the kernel loads it at the start of its RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The bytes from [`RAM_BASE`] to the end of the last segment's file bytes
    /// (of a Linux partition: to the end of its initrd); gaps and zero-filled
    /// parts within are zero.
    pub bytes: Vec<u8>,
    /// Where execution starts, from [`RAM_BASE`].
    pub entry_offset: u64,
    /// A Linux partition's device tree and initrd within `bytes`; its boot
    /// argument is the device tree's address. `None` for a partition program.
    pub linux: Option<LinuxParts>,
}

/// A file an image is read from, as the description names it; the caller of
/// [`load_images`] says where each is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFile<'a> {
    /// A partition program of the workspace, by name.
    Workspace(&'a str),
    /// A file the description names, as written (relative to its folder).
    Described(&'a Path),
    /// The default kernel of a Linux partition.
    DefaultKernel,
    /// The default initrd of a Linux partition.
    DefaultInitrd,
}

/// A broken image rule: the rule and what is wrong.
pub(crate) type Problem = (&'static str, String);

/// Reads, checks and flattens the program of every partition of `system` for
/// `board`, in the order of `system.partitions`; `locate` says where each file
/// is. Returns every image, or every broken image rule.
pub fn load_images(
    system: &System,
    board: &Board,
    locate: &dyn Fn(ImageFile<'_>) -> PathBuf,
) -> Result<Vec<Image>, DescriptionErrors> {
    let mut images = Vec::new();
    let mut errors = Vec::new();
    for partition in &system.partitions {
        let loaded = match &partition.image {
            ImageSource::Workspace(name) => load_elf(
                partition,
                board,
                &locate(ImageFile::Workspace(name)),
                &format!("program `{name}`"),
            ),
            ImageSource::File(path) => load_elf(
                partition,
                board,
                &locate(ImageFile::Described(path)),
                &format!("`{}`", path.display()),
            ),
            ImageSource::Linux(boot) => {
                let file = |written: &Option<PathBuf>, default| {
                    locate(written.as_deref().map_or(default, ImageFile::Described))
                };
                let initrd = file(&boot.initrd, ImageFile::DefaultInitrd);
                match &boot.program {
                    Some(name) => load_elf(
                        partition,
                        board,
                        &locate(ImageFile::Workspace(name)),
                        &format!("program `{name}`"),
                    )
                    .and_then(|program| {
                        let kernel = linux::Kernel::Program(name, program.bytes);
                        linux::load_image(partition, boot, kernel, &initrd)
                    }),
                    None => {
                        let kernel = file(&boot.kernel, ImageFile::DefaultKernel);
                        linux::load_image(partition, boot, linux::Kernel::File(&kernel), &initrd)
                    }
                }
            }
        };
        match loaded {
            Ok(image) => images.push(image),
            Err(problems) => {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|(rule, message)| DescriptionError {
                            file: system.path.clone(),
                            line: partition.image_at.line,
                            column: partition.image_at.column,
                            rule,
                            message,
                        }),
                )
            }
        }
    }
    if errors.is_empty() {
        Ok(images)
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(DescriptionErrors(errors))
    }
}

/// The ELF program of `partition`, read from `path`; `source` names it in
/// messages.
fn load_elf(
    partition: &Partition,
    board: &Board,
    path: &Path,
    source: &str,
) -> Result<Image, Vec<Problem>> {
    let what = format!("the image of `{}` ({source})", partition.name);
    let (mut file, len) =
        open_regular(path).map_err(|e| vec![("image-file", format!("{what}: {e}"))])?;
    let header = elf::read_header(&mut file, len).map_err(|e| {
        vec![match e {
            ElfError::Read(e) => ("image-file", format!("{what}: cannot read the file: {e}")),
            ElfError::Malformed(e) => ("image-elf", format!("{what}: {e}")),
        }]
    })?;
    let kept = partition.kept_ram();
    let problems = check(&header, board, kept);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|(rule, message)| (rule, format!("{what}: {message}")))
            .collect());
    }
    // Every segment lies inside the RAM kept, so this is at most `kept` bytes.
    let end = header
        .segments
        .iter()
        .map(|s| s.address + s.file_size)
        .max()
        .unwrap_or(RAM_BASE);
    let mut bytes = vec![0; usize::try_from(end - RAM_BASE).expect("at most RAM_MAX")];
    for segment in header.segments.iter().filter(|s| s.file_size > 0) {
        let start = usize::try_from(segment.address - RAM_BASE).expect("at most RAM_MAX");
        let size = usize::try_from(segment.file_size).expect("at most RAM_MAX");
        elf::read_segment(&mut file, segment, &mut bytes[start..start + size])
            .map_err(|e| vec![("image-file", format!("{what}: cannot read the file: {e}"))])?;
    }
    Ok(Image {
        bytes,
        entry_offset: header.entry - RAM_BASE,
        linux: None,
    })
}

/// The image rules `header` breaks on `board` for a partition that always keeps
/// `kept` bytes of RAM. Reports at most one segment outside that RAM and one
/// overlap, so that the report stays short whatever the file holds.
fn check(header: &Header, board: &Board, kept: u64) -> Vec<Problem> {
    let mut problems = Vec::new();
    if header.kind != ET_EXEC {
        let message = format!(
            "it is an ELF of type {}, not an executable (type {ET_EXEC}): the kernel loads it where it is linked, and it has no loader to relocate it",
            header.kind
        );
        problems.push(("image-elf", message));
    }
    match board.elf_machine() {
        Some(machine) if machine == header.machine => {}
        Some(_) => {
            let message = format!(
                "it is an ELF for {}, but `{}` is an {} board",
                elf::machine_name(header.machine),
                board.name,
                board.arch
            );
            problems.push(("image-arch", message));
        }
        None => {
            let message = format!(
                "board `{}` has architecture `{}`, for which no partition can be built",
                board.name, board.arch
            );
            problems.push(("image-arch", message));
        }
    }
    let ram_end = RAM_BASE + kept;
    let span = |s: &elf::Segment| (s.address, s.address.saturating_add(s.memory_size));
    if let Some(outside) = header.segments.iter().find(|s| {
        let (start, end) = span(s);
        start < RAM_BASE || end > ram_end || s.address.checked_add(s.memory_size).is_none()
    }) {
        let (start, end) = span(outside);
        let message = format!(
            "segment {} ({start:#x}..{end:#x}) lies outside the RAM the partition always keeps ({RAM_BASE:#x}..{ram_end:#x})",
            outside.index
        );
        problems.push(("image-segment", message));
    }
    // In address order, a segment overlaps an earlier one exactly when it starts
    // before the furthest end so far.
    let mut sorted: Vec<&elf::Segment> = header.segments.iter().collect();
    sorted.sort_by_key(|s| s.address);
    let mut furthest: Option<&elf::Segment> = None;
    for segment in sorted {
        if let Some(earlier) = furthest
            && segment.address < span(earlier).1
        {
            let ((a, b), (c, d)) = (span(earlier), span(segment));
            let message = format!(
                "segments {} ({a:#x}..{b:#x}) and {} ({c:#x}..{d:#x}) overlap",
                earlier.index, segment.index
            );
            problems.push(("image-segment", message));
            break;
        }
        if furthest.is_none_or(|f| span(segment).1 > span(f).1) {
            furthest = Some(segment);
        }
    }
    let entry = header.entry;
    let in_bytes = header
        .segments
        .iter()
        .any(|s| entry >= s.address && entry - s.address < s.file_size);
    if !in_bytes {
        let message =
            format!("its entry point {entry:#x} is outside the bytes of its loadable segments");
        problems.push(("image-entry", message));
    } else if !entry.is_multiple_of(4) {
        let message = format!("its entry point {entry:#x} is not 4-byte aligned");
        problems.push(("image-entry", message));
    }
    problems
}
