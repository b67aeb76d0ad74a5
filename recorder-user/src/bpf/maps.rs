//! Typed access to the loaded object's maps and programs, and the errors of map operations.

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::RawTracePoint,
};
use recorder_ebpf::{COLLIDED_MAP, SUBTREES_MAP, SubtreeEntry};

use super::BpfError;

/// A map operation on a cgroup's entry failed.
pub(super) fn cgroup_err(
    map: &'static str,
    op: &'static str,
    cgroup_id: u64,
) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Map {
        map,
        op,
        cgroup_id,
        source,
    }
}

/// A map operation on a set's slot failed.
pub(super) fn slot_err(
    map: &'static str,
    op: &'static str,
    slot: u32,
) -> impl FnOnce(MapError) -> BpfError {
    move |source| BpfError::Slot {
        map,
        op,
        slot,
        source,
    }
}

pub(super) fn map<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Map, BpfError> {
    ebpf.map_mut(name)
        .ok_or(BpfError::Missing { what: "map", name })
}

pub(super) fn open_err(map: &'static str) -> impl FnOnce(MapError) -> BpfError {
    cgroup_err(map, "open", 0)
}

pub(super) fn array<'a, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Array<&'a mut MapData, V>, BpfError> {
    Array::try_from(map(ebpf, name)?).map_err(open_err(name))
}

pub(super) fn collided(ebpf: &mut Ebpf) -> Result<HashMap<&mut MapData, u64, u32>, BpfError> {
    HashMap::try_from(map(ebpf, COLLIDED_MAP)?).map_err(open_err(COLLIDED_MAP))
}

pub(super) fn subtrees(
    ebpf: &mut Ebpf,
) -> Result<HashMap<&mut MapData, u64, SubtreeEntry>, BpfError> {
    HashMap::try_from(map(ebpf, SUBTREES_MAP)?).map_err(open_err(SUBTREES_MAP))
}

pub(super) fn per_cpu_array<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<PerCpuArray<&'a mut MapData, u64>, BpfError> {
    PerCpuArray::try_from(map(ebpf, name)?).map_err(open_err(name))
}

pub(super) fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut RawTracePoint, BpfError> {
    ebpf.program_mut(name)
        .ok_or(BpfError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(|source| BpfError::Program { name, source })
}
