# cluster.cmake: the `cluster` suite: cluster/train.sbatch on a local real Slurm (started and stopped
# inside each test by cluster/local-slurm.sh) and cluster/mpirun-train.sh. The tests drive the
# real `moe train` (MOE_TEST_KIND=moe) for the three acceptance flows (sbatch, preemption + requeue,
# a rank killed); the mpirun wrapper test drives the stand-in MPI program tests/cluster_standin.c
# (MOE_TEST_KIND=standin), which the other scripts also accept for debugging the machinery alone.
# The sanitizer pass skips them (label nosan): they test launch machinery, not our memory use.
# A test prints SKIP and returns 77 when slurm-wlm/munge are not installed. The tests share the
# 2 cores, so they never run together (RESOURCE_LOCK).
add_executable(cluster_standin cluster_standin.c)
target_link_libraries(cluster_standin PRIVATE MPI::MPI_C)

function(moe_add_cluster_test name script)
  cmake_parse_arguments(T "" "" "ENV" ${ARGN})
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cluster_${script}.sh)
  set_tests_properties(${name} PROPERTIES
    LABELS "cluster;nosan"
    ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};${T_ENV};${MOE_TEST_ENV}"
    SKIP_RETURN_CODE 77
    RESOURCE_LOCK moe_cluster
    PROCESSORS 2
    TIMEOUT 180)
endfunction()

foreach(t sbatch requeue rankkill)
  moe_add_cluster_test(cluster_${t} ${t} ENV "MOE_BIN=$<TARGET_FILE:moe>;MOE_TEST_KIND=moe")
endforeach()
moe_add_cluster_test(cluster_mpirun mpirun ENV "MOE_BIN=$<TARGET_FILE:cluster_standin>")

# The virtual cluster (cluster/vcluster.sh): network-namespace nodes joined by shaped links. Needs
# root for `ip netns`; prints SKIP and returns 77 where namespaces cannot be made.
add_test(NAME vcluster_train COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_vcluster_train.sh)
set_tests_properties(vcluster_train PROPERTIES
  LABELS "cluster;nosan"
  ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}"
  SKIP_RETURN_CODE 77
  RESOURCE_LOCK moe_cluster
  PROCESSORS 2
  TIMEOUT 400)
# Faults on the virtual cluster: a cut link, a killed node, a stopped rank — each ends the job
# within 60 s and the survivors resume (tests/test_vcluster_faults.sh).
add_test(NAME vcluster_faults COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/test_vcluster_faults.sh)
set_tests_properties(vcluster_faults PROPERTIES
  LABELS "cluster;nosan"
  ENVIRONMENT "MOE_SRC=${CMAKE_SOURCE_DIR};MOE_BIN=$<TARGET_FILE:moe>;${MOE_TEST_ENV}"
  SKIP_RETURN_CODE 77
  RESOURCE_LOCK moe_cluster
  PROCESSORS 2
  TIMEOUT 500)
# The sbatch and preemption flows again on a two-node Slurm over the virtual cluster (one slurmd per
# node namespace; jobs of 2 nodes x 1 rank; srun --mpi=pmix and mpirun across the nodes).
moe_add_cluster_test(cluster_vc_sbatch sbatch ENV "MOE_BIN=$<TARGET_FILE:moe>;MOE_TEST_KIND=moe;MOE_TEST_VCLUSTER=1")
moe_add_cluster_test(cluster_vc_requeue requeue ENV "MOE_BIN=$<TARGET_FILE:moe>;MOE_TEST_KIND=moe;MOE_TEST_VCLUSTER=1")
set_tests_properties(cluster_vc_sbatch cluster_vc_requeue PROPERTIES TIMEOUT 300)
