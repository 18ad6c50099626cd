#include "policy.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace dsedge {

namespace {
constexpr int kContractVersion = 1;  // dsedge.runtime.contract.CONTRACT_VERSION this code implements
}

Manifest read_manifest(const std::string& bundle_dir) {
    const std::string path = bundle_dir + "/dsedge.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("not a dsedge bundle (no " + path + ")");
    const nlohmann::json m = nlohmann::json::parse(f);
    if (m.value("format", "") != "dsedge-bundle") throw std::runtime_error(path + " is not a dsedge manifest");
    if (m.contains("preprocessing_contract") && m["preprocessing_contract"].value("version", 0) > kContractVersion) {
        throw std::runtime_error("the bundle's preprocessing contract is newer than this reference implements");
    }
    Manifest out;
    const auto& pre = m.at("preprocessing");
    out.preprocessing.resize = pre.at("resize").get<int>();
    out.preprocessing.crop = pre.at("crop").get<int>();
    out.preprocessing.interpolation = pre.value("interpolation", "bilinear");
    if (out.preprocessing.interpolation != "bilinear" && out.preprocessing.interpolation != "bicubic") {
        throw std::runtime_error("unsupported interpolation " + out.preprocessing.interpolation);
    }
    for (int c = 0; c < 3; ++c) {
        out.preprocessing.mean[c] = static_cast<float>(pre.at("mean").at(c).get<double>());
        out.preprocessing.stdev[c] = static_cast<float>(pre.at("std").at(c).get<double>());
    }
    out.policy.classes = m.at("classes").get<std::vector<std::string>>();
    if (m.contains("clinical") && m["clinical"].is_object()) {
        const auto& clinical = m["clinical"];
        out.policy.temperature = clinical.value("temperature", 1.0);
        out.policy.uncertain_margin = clinical.value("uncertain_margin", 0.15);
        if (clinical.contains("operating_point") && clinical["operating_point"].is_object()) {
            const auto& point = clinical["operating_point"];
            if (point.contains("threshold") && point["threshold"].is_number()) {
                out.policy.has_threshold = true;
                out.policy.threshold = point["threshold"].get<double>();
            }
            out.policy.melanoma_class = point.value("class", std::string("MEL"));
        }
    }
    out.logits_output = "logits";
    if (m.contains("outputs") && m["outputs"].is_array() && !m["outputs"].empty()) {
        out.logits_output = m["outputs"][0].value("name", std::string("logits"));
    }
    for (const auto& [name, entry] : m.at("artifacts").items()) {
        if (entry.value("kind", "") == "onnx") out.onnx_files.push_back(name);
    }
    return out;
}

Decision decide(const Policy& policy, const std::vector<float>& logits) {
    const size_t n = logits.size();
    if (n != policy.classes.size()) throw std::runtime_error("the model's output does not match the class list");
    Decision d;
    std::vector<double> z(n);
    for (size_t i = 0; i < n; ++i) z[i] = static_cast<double>(logits[i]) / policy.temperature;
    const double zmax = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (double& v : z) sum += (v = std::exp(v - zmax));
    d.probabilities.resize(n);
    for (size_t i = 0; i < n; ++i) d.probabilities[i] = z[i] / sum;
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return d.probabilities[a] > d.probabilities[b]; });
    const double margin = n < 2 ? 1.0 : d.probabilities[order[0]] - d.probabilities[order[1]];
    d.uncertain = margin < policy.uncertain_margin;
    const auto mel_it = std::find(policy.classes.begin(), policy.classes.end(), policy.melanoma_class);
    if (mel_it == policy.classes.end()) {
        d.decision = policy.classes[order[0]];
        return d;
    }
    const size_t mel = static_cast<size_t>(mel_it - policy.classes.begin());
    d.melanoma_risk = d.probabilities[mel];
    const bool refer = policy.has_threshold ? d.melanoma_risk >= policy.threshold : order[0] == mel;
    if (refer) {
        d.decision = "refer";
    } else {
        for (size_t i : order) {
            if (i != mel) {
                d.decision = policy.classes[i];
                break;
            }
        }
    }
    return d;
}

}  // namespace dsedge
