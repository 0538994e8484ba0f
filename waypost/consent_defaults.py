"""The default opt-out and opt-in words (`language:word`) and their confirmations: the defaults of
WAYPOST_OPT_OUT_WORDS, WAYPOST_OPT_IN_WORDS and the confirmation settings (README "Consent"). The
confirmations of the other languages name the opt-in (opt-out) word of their own language. Also the
phrases that ask for a person (WAYPOST_HANDOVER_WORDS, README "Handing over")."""

# fmt: off
OPT_OUT_WORDS: tuple[str, ...] = (
    "en:stop", "en:stop all", "en:unsubscribe", "en:opt out", "en:opt-out", "en:optout", "en:stop promotions",
    "es:baja", "es:darse de baja", "es:parar", "es:alto", "es:cancelar suscripción",
    "pt:sair", "pt:descadastrar",
    "fr:arrêt", "fr:arret", "fr:désabonner", "fr:desabonner", "fr:désinscription",
    "de:stopp", "de:abmelden", "de:abbestellen",
    "it:disiscriviti", "it:annulla iscrizione",
    "nl:afmelden",
    "ar:توقف",
    "ru:стоп", "ru:отписаться",
)

OPT_IN_WORDS: tuple[str, ...] = (
    "en:start", "en:unstop", "en:subscribe", "en:resume", "en:opt in", "en:opt-in", "en:optin",
    "es:alta", "es:suscribir",
    "pt:voltar", "pt:inscrever",
    "fr:reprendre", "fr:abonner",
    "de:anmelden",
    "it:iscriviti",
    "nl:aanmelden",
    "ar:ابدأ",
    "ru:старт", "ru:подписаться",
)

OPT_OUT_CONFIRMATION = "You will no longer receive marketing messages from us. Reply START to receive them again."
OPT_IN_CONFIRMATION = "You will receive our marketing messages again. Reply STOP to stop them."

OPT_OUT_CONFIRMATIONS: dict[str, str] = {
    "es": "Ya no recibirás mensajes de marketing de nuestra parte. Responde ALTA para volver a recibirlos.",
    "pt": "Você não receberá mais nossas mensagens de marketing. Responda VOLTAR para recebê-las novamente.",
    "fr": "Vous ne recevrez plus nos messages marketing. Répondez REPRENDRE pour les recevoir à nouveau.",
    "de": "Sie erhalten keine Marketing-Nachrichten mehr. Antworten Sie ANMELDEN, um sie wieder zu erhalten.",
    "it": "Non riceverai più i nostri messaggi promozionali. Rispondi ISCRIVITI per riceverli di nuovo.",
    "nl": "Je ontvangt geen marketingberichten meer van ons. Antwoord AANMELDEN om ze weer te ontvangen.",
    "ar": "لن تصلك رسائلنا التسويقية بعد الآن. أرسل ابدأ لتلقيها مرة أخرى.",
    "ru": "Вы больше не будете получать наши рекламные сообщения. Ответьте СТАРТ, чтобы снова их получать.",
}

OPT_IN_CONFIRMATIONS: dict[str, str] = {
    "es": "Volverás a recibir nuestros mensajes de marketing. Responde BAJA para dejar de recibirlos.",
    "pt": "Você voltará a receber nossas mensagens de marketing. Responda SAIR para pará-las.",
    "fr": "Vous recevrez à nouveau nos messages marketing. Répondez ARRÊT pour les arrêter.",
    "de": "Sie erhalten wieder unsere Marketing-Nachrichten. Antworten Sie ABMELDEN, um sie zu beenden.",
    "it": "Riceverai di nuovo i nostri messaggi promozionali. Rispondi DISISCRIVITI per interromperli.",
    "nl": "Je ontvangt onze marketingberichten weer. Antwoord AFMELDEN om ze te stoppen.",
    "ar": "ستصلك رسائلنا التسويقية مرة أخرى. أرسل توقف لإيقافها.",
    "ru": "Вы снова будете получать наши рекламные сообщения. Ответьте СТОП, чтобы отказаться.",
}
# Phrases that ask for a person (WAYPOST_HANDOVER_WORDS): whole words anywhere in a message
HANDOVER_WORDS: tuple[str, ...] = (
    "en:human", "en:a person", "en:real person", "en:someone real", "en:talk to someone", "en:an agent",
    "en:live agent", "en:operator", "en:representative", "en:customer service",
    "es:humano", "es:una persona", "es:un agente", "es:asesor",
    "pt:atendente", "pt:humano", "pt:uma pessoa",
    "fr:humain", "fr:une personne", "fr:un conseiller",
    "de:mensch", "de:mitarbeiter", "de:echte person",
    "it:operatore", "it:una persona",
    "nl:medewerker", "nl:een mens",
)
HANDOVER_MESSAGE = "Thanks! A person from our team will answer you here as soon as they can."
# fmt: on
