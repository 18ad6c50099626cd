// dsedge C++ reference (OpenVINO): classify JPEGs with a bundle, exactly like `dsedge predict`.
//
//   dsedge_ref BUNDLE IMAGE.jpg... [--model FILE] [--dump-dir DIR] [--json]
//
// --model   the ONNX file to run (default BUNDLE/model.onnx; e.g. BUNDLE/model.int8.onnx). OpenVINO's
//           ONNX reader rejects model-local functions: give it a file with the dsedge::SimAM calls
//           inlined (`dsedge export --inline-simam` writes model.inline.onnx; see docs/PREPROCESSING.md).
// --dump-dir  also write each input tensor as raw little-endian float32 (3 x crop x crop), for tests.
// --json    one JSON object per image instead of the human-readable lines.
//
// Input-quality checks (exposure, blur, ...) of the Python runtime are not reimplemented here.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <openvino/openvino.hpp>

#include "policy.hpp"
#include "preprocess.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Args {
    std::string bundle, model, dump_dir;
    std::vector<std::string> images;
    bool json = false;
};

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string s = argv[i];
        if ((s == "--model" || s == "--dump-dir") && i + 1 < argc) {
            (s == "--model" ? a.model : a.dump_dir) = argv[++i];
        } else if (s == "--json") {
            a.json = true;
        } else if (a.bundle.empty()) {
            a.bundle = s;
        } else {
            a.images.push_back(s);
        }
    }
    if (a.bundle.empty() || a.images.empty()) {
        throw std::invalid_argument("usage: dsedge_ref BUNDLE IMAGE.jpg... [--model FILE] [--dump-dir DIR] [--json]");
    }
    if (a.model.empty()) a.model = a.bundle + "/model.onnx";
    return a;
}

std::string stem(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    const size_t dot = name.find_last_of('.');
    return dot == std::string::npos ? name : name.substr(0, dot);
}

void dump(const std::string& dir, const std::string& image, const std::vector<float>& tensor) {
    std::ofstream f(dir + "/" + stem(image) + ".f32", std::ios::binary);
    f.write(reinterpret_cast<const char*>(tensor.data()), static_cast<std::streamsize>(tensor.size() * sizeof(float)));
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    dsedge::Manifest manifest;
    try {
        args = parse(argc, argv);
        manifest = dsedge::read_manifest(args.bundle);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    }
    const int crop = manifest.preprocessing.crop;
    ov::Core core;
    std::shared_ptr<ov::Model> model;
    ov::CompiledModel compiled;
    try {
        model = core.read_model(args.model);
        model->reshape({{model->input().get_any_name(), ov::PartialShape{1, 3, crop, crop}}});
        // f32 explicitly: OpenVINO picks bf16 on AMX CPUs when nothing is said (as the Python runner does)
        compiled = core.compile_model(model, "CPU", ov::hint::inference_precision(ov::element::f32),
                                      ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY));
    } catch (const std::exception& e) {
        std::cerr << "error: OpenVINO cannot load " << args.model << ": " << e.what() << "\n";
        return 2;
    }
    ov::InferRequest request = compiled.create_infer_request();
    ov::Output<const ov::Node> logits_port = compiled.output(0);
    for (const auto& out : compiled.outputs()) {
        if (out.get_names().count(manifest.logits_output)) logits_port = out;
    }
    int failures = 0;
    for (const std::string& image : args.images) {
        nlohmann::json result = {{"image", image}};
        try {
            auto t0 = Clock::now();
            const dsedge::Decoded decoded = dsedge::decode_jpeg(image);
            if (decoded.has_icc) {
                throw dsedge::Unsupported(image + ": embedded ICC profile (the Python runtime converts it to sRGB; "
                                          "this reference does not: see docs/PREPROCESSING.md)");
            }
            const double decode_ms = ms_since(t0);
            t0 = Clock::now();
            std::vector<float> tensor = dsedge::preprocess(decoded, manifest.preprocessing);
            const double pre_ms = ms_since(t0);
            t0 = Clock::now();
            ov::Tensor input(ov::element::f32, ov::Shape{1, 3, static_cast<size_t>(crop), static_cast<size_t>(crop)},
                             tensor.data());
            request.set_input_tensor(input);
            request.infer();
            const ov::Tensor out = request.get_tensor(logits_port);
            const float* raw = out.data<const float>();
            std::vector<float> logits(raw, raw + out.get_size());
            const double infer_ms = ms_since(t0);
            t0 = Clock::now();
            const dsedge::Decision d = dsedge::decide(manifest.policy, logits);
            const double post_ms = ms_since(t0);
            if (!args.dump_dir.empty()) dump(args.dump_dir, image, tensor);
            nlohmann::json probs;
            for (size_t i = 0; i < d.probabilities.size(); ++i) probs[manifest.policy.classes[i]] = d.probabilities[i];
            result["decision"] = d.decision;
            result["probabilities"] = probs;
            result["melanoma_risk"] = d.melanoma_risk < 0 ? nlohmann::json() : nlohmann::json(d.melanoma_risk);
            result["uncertain"] = d.uncertain;
            result["logits"] = logits;
            result["exif_orientation"] = decoded.orientation;
            result["timings_ms"] = {{"decode", decode_ms}, {"preprocess", pre_ms}, {"infer", infer_ms},
                                    {"post", post_ms}};
            if (!args.json) {
                std::printf("%s: %s", image.c_str(), d.decision.c_str());
                for (size_t i = 0; i < d.probabilities.size(); ++i) {
                    std::printf("  %s %.4f", manifest.policy.classes[i].c_str(), d.probabilities[i]);
                }
                std::printf("%s\n  pre / infer / post ms: %.2f / %.2f / %.2f  (decode %.2f + preprocess %.2f)\n",
                            d.uncertain ? "  (uncertain)" : "", decode_ms + pre_ms, infer_ms, post_ms, decode_ms,
                            pre_ms);
            }
        } catch (const std::exception& e) {
            ++failures;
            result["error"] = e.what();
            if (!args.json) std::fprintf(stderr, "error: %s\n", e.what());
        }
        if (args.json) std::cout << result.dump() << std::endl;
    }
    return failures ? 1 : 0;
}
