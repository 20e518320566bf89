// The example of the README's "Using the library" section, compiled and linked (never run)
// against the installed package, so the README stays true to the API. CMakeLists.txt pastes
// the README's #include lines at file scope and the rest of its code block into the body below.
#include <cstdint>

#include "readme_includes.inc"  // nothing else from epgraph: the README's includes must suffice

void readme_example(int argc, char** argv, const std::int32_t* d_num_tokens, const std::int32_t* d_topk_ids,
                    const void* d_hidden, const void* d_weights, void* d_output,
                    const epgraph::graph::expert_stage& my_expert_stage) {
#include "readme_example.inc"
}
