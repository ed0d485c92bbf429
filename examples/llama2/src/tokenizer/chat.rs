//! Chat prompts. A model's `tokenizer.chat_template` is a Jinja program; rather than run it,
//! the template's family is recognised by its markers and rendered natively, the way the
//! reference implementation's built-in templates do. Templates of an unknown family fall
//! back to a plain role-prefixed prompt, with a notice saying so.

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A recognised chat prompt format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n` to prompt a reply. Templates that also insert a default
    /// system message when none is given are rendered without it.
    ChatMl,
    /// No recognised template: `Role: content` lines, then `Assistant:`.
    Plain {
        /// Why the plain format is used, for the user.
        notice: String,
    },
}

impl ChatTemplate {
    /// Recognises the family of a `tokenizer.chat_template` string.
    pub fn detect(source: Option<&str>) -> ChatTemplate {
        match source {
            Some(s) if s.contains("<|im_start|>") && s.contains("<|im_end|>") => {
                ChatTemplate::ChatMl
            }
            Some(_) => ChatTemplate::Plain {
                notice: "the model's chat template is of an unrecognised family; \
                         using a plain 'Role: text' prompt"
                    .to_owned(),
            },
            None => ChatTemplate::Plain {
                notice: "the model has no chat template; using a plain 'Role: text' prompt"
                    .to_owned(),
            },
        }
    }

    /// Why the prompt is not in the model's own format, when it is not.
    pub fn notice(&self) -> Option<&str> {
        match self {
            ChatTemplate::ChatMl => None,
            ChatTemplate::Plain { notice } => Some(notice),
        }
    }

    /// Renders a conversation; `add_generation_prompt` ends it with the assistant's cue.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::ChatMl => {
                for m in messages {
                    out += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
                }
                if add_generation_prompt {
                    out += "<|im_start|>assistant\n";
                }
            }
            ChatTemplate::Plain { .. } => {
                for m in messages {
                    out += &format!("{}: {}\n", capitalised(&m.role), m.content);
                }
                if add_generation_prompt {
                    out += "Assistant:";
                }
            }
        }
        out
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_is_recognised_and_rendered() {
        let t = ChatTemplate::detect(Some(SMOLLM2));
        assert_eq!(t, ChatTemplate::ChatMl);
        assert_eq!(t.notice(), None);
        let msgs = [ChatMessage::system("Be brief."), ChatMessage::user("Hi")];
        assert_eq!(
            t.render(&msgs, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&msgs[1..], false),
            "<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn unknown_or_missing_templates_fall_back_with_a_notice() {
        let t = ChatTemplate::detect(Some("{{ bos_token }}[INST] {{ content }} [/INST]"));
        assert!(t.notice().unwrap().contains("unrecognised"));
        let msgs = [ChatMessage::user("Hi"), ChatMessage::assistant("Hello")];
        assert_eq!(
            t.render(&msgs, true),
            "User: Hi\nAssistant: Hello\nAssistant:"
        );
        assert!(ChatTemplate::detect(None)
            .notice()
            .unwrap()
            .contains("no chat template"));
    }
}
